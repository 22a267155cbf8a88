#!/usr/bin/env bash
# How the GPU figures in benchmarks/README.md were made, on an offline GPU server that has torch,
# lightning and torchmetrics but not anndata, zarr, openslide or scikit-image.
#
# Here (with network):  ../shared/tools/gpu-wheels.sh scikit-image networkx imageio tifffile lazy-loader
#                       python benchmarks/her2st.py prepare --dir .gpu_data
#                       cp ../shared/data/wsi/CMU-1-Small-Region.svs .gpu_data/
# There, from the repository root, with these copied beside the code (48 MB; the device tool carries at
# most 64 MiB, so not all of .gpu_data): .whl .gpu_data/her2st_pairs.npz .gpu_data/her2st_immune.npz
# .gpu_data/CMU-1-Small-Region.svs. Each command below fits the server's 10-minute limit, and what it
# writes to OUT fits in what comes back (8 files, 16 MiB each, 64 MiB in all).
#   benchmarks/gpu.sh bench OUT       # benchmarks/gan.py (the β-VAE's vae.py and tiling ran on 2026-11-23)
#   benchmarks/gpu.sh tiles OUT       # tiles.py loader only: augmentation on the GPU / none / in workers
#   benchmarks/gpu.sh rnagan OUT      # HER2ST RNA-GAN, 8 minutes of training, tiles for C5 and C1
#   benchmarks/gpu.sh gan OUT         # the noise-only GAN, the same 8 minutes
#   UPSAMPLE=resize benchmarks/gpu.sh rnagan OUT2   # resize-convolution instead of the published transpose
#   AUX=10 benchmarks/gpu.sh rnagan OUT   # + the auxiliary condition loss, written as rnagan-aux10 beside rnagan
#   benchmarks/gpu.sh cdm OUT         # RNA-CDM (cascaded diffusion), the same 8 minutes (+ enrich step here first),
#                                     # then as many of its C5 tile sets as fit before 9.2 minutes; the model
#                                     # stays on the server (benchmarks/out/cdm_model) while it is warm, so
#   benchmarks/gpu.sh cdm-paint OUT2  # run AT ONCE after it (the server goes cold 30 s after a command): the rest,
#                                     # as much as one command returns; run it again (OUT3) until nothing is left
#   benchmarks/gpu.sh diffusion OUT   # benchmarks/diffusion.py: base-stage training (eager against tuned)
#   benchmarks/gpu.sh cascade OUT     # benchmarks/diffusion.py: the full cascade at 256 px, five settings
set -euo pipefail
what=$1
out=${2:-benchmarks/out/gpu}
mkdir -p "$out"
if ! python3 -c "import anndata, zarr, skimage" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
case $what in
  bench)
    timeout 560 python3 benchmarks/gan.py --compile --json "$out/gan.json" 2>&1 | grep -v Warning || true
    ;;
  tiles)
    timeout 300 python3 benchmarks/tiles.py --slide .gpu_data/CMU-1-Small-Region.svs --skip-tiling \
      --workers 1 4 8 15 --augment-on device none worker --json "$out/tiles.json" 2>&1 | tail -16 || true
    ;;
  rnagan|gan)
    aux=()
    if [[ -n "${AUX:-}" ]]; then aux=(--aux-weight "$AUX" --name "rnagan-aux$AUX"); fi
    python3 benchmarks/her2st.py train --pairs .gpu_data/her2st_pairs.npz --method "$what" \
      --minutes "${MINUTES:-8}" --upsample "${UPSAMPLE:-transpose}" --out "$out" "${aux[@]}"
    ;;
  cdm)
    python3 benchmarks/her2st.py train --pairs .gpu_data/her2st_pairs.npz --method cdm --batch-size 128 \
      --minutes "${MINUTES:-8}" --out "$out" --save-model benchmarks/out/cdm_model --deadline-minutes 9.2 \
      --out-files 8 --out-mib 62 \
      2>&1 | grep -v Warning
    ;;
  cdm-paint)
    python3 benchmarks/her2st.py paint --model benchmarks/out/cdm_model --pairs .gpu_data/her2st_pairs.npz \
      --out "$out" --deadline-minutes 9.3 --out-files 8 --out-mib 62 2>&1 | grep -v Warning
    ;;
  diffusion)
    timeout 570 python3 benchmarks/diffusion.py --part train --json "$out/diffusion.json" 2>&1 | grep -v Warning
    ;;
  cascade)
    timeout 570 python3 benchmarks/diffusion.py --part cascade --json "$out/cascade.json" 2>&1 | grep -v Warning
    ;;
  *) echo "unknown: $what" >&2; exit 2 ;;
esac
