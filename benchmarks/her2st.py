"""RNA-GAN, the noise-only GAN and RNA-CDM on HER2ST at GPU size: train on C2–C4, hold out C5, equal GPU time.

Several steps, because the GPU server has no scanpy and only small files come back from it:

``prepare`` (here, on the CPU)
    Counts → normalise → log → the 2,000 most variable genes of the training spots → z-score →
    β-VAE (hidden 512/256, latent 64); 224-px spot patches (≈ 154 µm) resized to ``--size``. Writes
    ``DIR/her2st_pairs.npz`` (tiles, latents, spot table: what the GPU run needs, ~25 MB) and
    ``DIR/her2st_expression.h5ad`` (z-scored expression, for the evaluation).
``enrich`` (here)
    The immune-enrichment profiles of RNA-CDM's experiment: each spot's z-scored profile plus the
    mean profile of the immune-rich training spots (top decile of stereoscope B + T + myeloid +
    plasma cells), encoded with the same β-VAE. Writes ``DIR/her2st_immune.npz`` (latents, tiny).
``train`` (on the GPU)
    One method for ``--minutes`` of training, then tiles from the EMA weights for the held-out C5
    spots (``--per-spot`` each; GANs also one for every C1 spot: no image, virtual H&E). Writes
    ``OUT/<method>.json`` (steps, throughput, losses) and ``OUT/<method>_c5_<i>.npz`` chunks under
    16 MiB. ``--name rnagan-<tag>`` writes an RNA-GAN variant (e.g. ``--aux-weight 10``) under its own
    name; ``evaluate``, ``fidelity`` and ``checkerboard`` score it beside RNA-GAN and the GAN, with
    its paired fidelity differences to both. RNA-CDM (``--method cdm``, base 64 px → 128 px, the
    minutes split between the stages) also writes ``OUT/cdm_extra_<i>.npz``: 250-step DDIM
    against 25-step DPM-Solver++, guidance scales 0 / 1 / 4, and immune-enriched profiles painted
    with the noise of each spot's first tile. Training and all of that painting do not fit in one
    10-minute command on the GPU server: ``--save-model DIR --deadline-minutes 9.2`` saves the model,
    paints what fits (most needed first) and records it in ``DIR/painted.json``. ``--small`` trains
    RNA-CDM at a size two CPU cores handle in tens of minutes (``SMALL_CDM``: a 32-px base stage).
``paint`` (on the GPU, right after ``train --method cdm --save-model DIR``)
    Loads ``DIR`` and paints the RNA-CDM tile sets left undone, into another ``OUT``; copy both
    ``OUT`` folders' files into one folder for ``evaluate``.
``evaluate`` (here)
    Real C5 patches, RNA-GAN, GAN, and the nearest-neighbour baseline through ``rp.tl.evaluate``:
    KID/FID (Inception and rnapaint's tile encoder), condition fidelity (expression clusters),
    paired fidelity differences between generators, retrieval, nuclei composition. Writes a report
    CSV, a figure and tile grids.
``fidelity`` (here)
    Condition fidelity and the paired generator differences again, with tile encoders trained from
    several seeds: is a gap between generators larger than the encoder's own spread?
``composition`` (here)
    Per generator and run, the Spearman ρ over the C5 spots between its tiles' nuclei features and
    the spots' deconvolved cell shares: faithfulness that a global shift of the tiles cannot hide
    or fake, with no encoder to train (seconds; several runs, e.g. training seeds, in one table).
    Tiles without cells whose amount of stain follows the expression score well here too: read it
    beside KID and the grids.
``stages`` (here, or wherever the saved model is)
    A saved RNA-CDM's base images and final tiles for C5 spots against the real tiles at each
    stage's resolution (grid + pixel roughness): which stage is behind unrealistic tiles.
``checkerboard`` (here)
    The checkerboard artifacts of strided upsampling (``rp.metrics.checkerboard``, dB) of real and
    generated C5 tiles, for one or several runs (e.g. ``--upsample transpose`` against ``resize``).

Usage::

    python benchmarks/her2st.py prepare --data ../shared/data --dir .gpu_data
    python benchmarks/her2st.py enrich --dir .gpu_data
    python benchmarks/her2st.py train --pairs .gpu_data/her2st_pairs.npz --method rnagan --minutes 8 --out $OUT
    python benchmarks/her2st.py evaluate --dir .gpu_data --runs DIR_WITH_TRAIN_OUTPUTS --out benchmarks/out/her2st
    python benchmarks/her2st.py fidelity --dir .gpu_data --runs DIR_WITH_TRAIN_OUTPUTS --seeds 0 1 2
    python benchmarks/her2st.py checkerboard --runs DIR_WITH_TRAIN_OUTPUTS [ANOTHER_RUN ...]
    python benchmarks/her2st.py composition --runs DIR_WITH_TRAIN_OUTPUTS [ANOTHER_RUN ...]
    python benchmarks/her2st.py stages --model DIR_GIVEN_TO_SAVE_MODEL --out benchmarks/out/cdm_stages
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

_T0 = time.monotonic()  # this process's start: the GPU server stops a command after 10 minutes

try:
    import rnapaint as rp
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import rnapaint as rp

SECTIONS = ["C1", "C2", "C3", "C4", "C5"]
TRAIN_SECTIONS = ["C2", "C3", "C4"]


def prepare(args) -> None:
    import scanpy as sc

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    adata = rp.datasets.her2st(args.data, sections=SECTIONS, images=True)
    with_image = adata[adata.obs["section"] != "C1"].copy()
    rp.pp.spot_tiles(with_image, size=224, out_size=args.size, library_key="section", progress_bar=False)
    tiles = np.zeros((adata.n_obs, args.size, args.size, 3), np.uint8)
    tiles[adata.obs_names.get_indexer(with_image.obs_names)] = with_image.obsm["tiles"][:, 0]
    has_image = np.zeros(adata.n_obs, bool)
    has_image[adata.obs_names.get_indexer(with_image.obs_names)] = True

    section = adata.obs["section"].astype(str).to_numpy()
    split = np.where(np.isin(section, TRAIN_SECTIONS), "train", "test").astype(object)
    rng = np.random.default_rng(0)
    train = np.flatnonzero(split == "train")
    split[rng.choice(train, len(train) // 10, replace=False)] = "val"  # β-VAE early stopping only
    adata.obs["split"] = split.astype(str)

    sc.pp.normalize_total(adata, target_sum=1e4)
    rp.pp.log1p(adata)
    is_train = (adata.obs["split"] == "train").to_numpy()
    hvg = sc.pp.highly_variable_genes(adata[is_train], n_top_genes=2000, inplace=False)
    adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
    rp.pp.zscore(adata)
    rp.tl.vae(
        adata, hidden=(512, 256), latent_dim=args.latent, max_epochs=300, lr=1e-3, batch_size=64, progress_bar=False
    )
    rp.tl.get_model(adata, "vae").save(out / "vae", overwrite=True)
    hist = adata.uns["vae"]["history"]
    print(f"β-VAE: {len(hist['train_loss'])} epochs, last val loss {hist['val_loss'][-1]:.4f}")

    obs = adata.obs
    np.savez_compressed(
        out / "her2st_pairs.npz",
        tiles=tiles,
        has_image=has_image,
        X_vae=adata.obsm["X_vae"].astype(np.float32),
        obs_names=obs.index.to_numpy(str),
        section=obs["section"].to_numpy(str),
        split=obs["split"].to_numpy(str),
        cluster=obs["cluster"].astype(str).to_numpy(str),
        array_x=obs["array_x"].to_numpy(),
        array_y=obs["array_y"].to_numpy(),
    )
    keep = adata.copy()
    keep.obsm["tiles"] = tiles[:, None]
    keep.obs["has_image"] = has_image
    keep.uns.pop("spatial", None)  # the full-size H&E stays in the data folder
    keep.write_h5ad(out / "her2st_expression.h5ad", compression="gzip")
    size = (out / "her2st_pairs.npz").stat().st_size / 2**20
    print(
        f"wrote {out}/her2st_pairs.npz ({size:.1f} MiB): {adata.n_obs} spots, {has_image.sum()} with a patch, "
        f"{args.size} px; train {is_train.sum()} spots"
    )


IMMUNE = ["B-cells", "T-cells", "Myeloid", "Plasma Cells"]


def enrich(args) -> None:
    import anndata as ad

    d = Path(args.dir)
    adata = ad.read_h5ad(d / "her2st_expression.h5ad")
    vae = rp.models.BetaVAE.load(d / "vae")
    props = adata.obsm["cell_type_proportions"]
    immune = props[IMMUNE].sum(1).to_numpy()
    train = (adata.obs["section"].isin(TRAIN_SECTIONS) & np.isfinite(immune)).to_numpy()
    rich = train & (immune >= np.nanquantile(immune[train], 0.9))
    x = np.asarray(adata.X, np.float32)
    shifted = adata.copy()
    shifted.X = x + args.strength * x[rich].mean(0, keepdims=True)  # z-scores: the rich spots' deviation
    z = vae.get_latent(shifted)
    np.savez(
        d / "her2st_immune.npz",
        obs_names=adata.obs_names.to_numpy(str),
        X_vae_immune=z.astype(np.float32),
        immune=immune.astype(np.float32),
    )
    print(
        f"immune-rich training spots: {rich.sum()} (immune proportion ≥ {immune[rich].min():.3f}); latent shift "
        f"|Δz| = {np.linalg.norm(z - adata.obsm['X_vae'], axis=1).mean():.3f} (spread of X_vae "
        f"{np.linalg.norm(adata.obsm['X_vae'] - adata.obsm['X_vae'].mean(0), axis=1).mean():.3f})"
    )


def _pairs(path: str):
    import anndata as ad
    import pandas as pd

    d = np.load(path, allow_pickle=False)
    obs = pd.DataFrame(
        {k: d[k] for k in ("section", "split", "cluster", "array_x", "array_y")},
        index=pd.Index(d["obs_names"], dtype=str),
    )
    adata = ad.AnnData(obs=obs, obsm={"X_vae": d["X_vae"]})
    return adata, d["tiles"][:, None], d["has_image"]


def _grid_png(rows: list[np.ndarray], path: Path) -> None:
    """Rows of tiles (each ``(k, H, W, 3)``) side by side, 4 px white gaps; PIL only (no matplotlib there)."""
    from PIL import Image

    k, h, w, _ = rows[0].shape
    g = 4
    canvas = np.full((len(rows) * (h + g), k * (w + g), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            canvas[r * (h + g) : r * (h + g) + h, c * (w + g) : c * (w + g) + w] = t
    Image.fromarray(canvas).save(path)


def train(args) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adata, tiles, has_image = _pairs(args.pairs)
    section = adata.obs["section"].to_numpy()
    units = adata.obs_names[np.isin(section, TRAIN_SECTIONS) & has_image]
    name = args.name or args.method
    if args.aux_weight and args.method != "rnagan":
        raise SystemExit("--aux-weight is an RNA-GAN option.")
    if name != args.method and not (args.method == "rnagan" and name.startswith("rnagan-") and "_" not in name):
        raise SystemExit(f"--name must be 'rnagan-<tag>' (no underscore) for an RNA-GAN variant, got {name!r}.")
    if (args.tiny or args.small) and args.method != "cdm":
        raise SystemExit("--tiny and --small are RNA-CDM options.")
    if args.tiny and args.small:
        raise SystemExit("--tiny or --small, not both.")
    if args.method == "cdm":
        return train_cdm(args, adata, tiles, units, out)
    condition = "vae" if args.method == "rnagan" else None
    model = rp.models.TileGAN(
        adata,
        tiles,
        condition=condition,
        units=units,
        width=args.width,
        latent_dim=adata.obsm["X_vae"].shape[1],
        upsample=args.upsample,
        **({"aux_weight": args.aux_weight} if args.aux_weight else {}),
    )
    print(model, flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    model.train(
        max_steps=10**9,
        max_time=args.minutes * 60,
        batch_size=args.batch_size,
        n_critic=5,
        num_workers=args.workers,
        progress_bar=False,
        seed=args.seed,
        gp_every=args.gp_every,
    )
    seconds = time.perf_counter() - t0
    info = dict(model.train_info)
    record = {
        "method": args.method,
        "name": name,
        "minutes": args.minutes,
        "wall_s": seconds,
        **info,
        "critic_tiles_per_s": info["steps"] * args.batch_size / info["seconds"],
        "config": {k: v for k, v in model.config.items() if not k.startswith("condition_")},
        "history_last": {k: v[-1] for k, v in model.history.items() if v},
        "history": model.history,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
    c5 = np.flatnonzero(section == "C5")
    c1 = np.flatnonzero(section == "C1")
    t1 = time.perf_counter()
    gen_c5 = model.generate(adata[c5], n_per_obs=args.per_spot, seed=1)
    gen_c1 = model.generate(adata[c1], n_per_obs=1, seed=2)
    record["generate_tiles_per_s"] = (gen_c5.shape[0] * gen_c5.shape[1] + len(c1)) / (time.perf_counter() - t1)
    # Chunks under 16 MiB each (what comes back from the GPU server), uncompressed: GAN tiles hardly compress.
    per_chunk = max(1, int(14 * 2**20 // gen_c5[0].nbytes))
    names = adata.obs_names.to_numpy(str)
    for i, lo in enumerate(range(0, len(c5), per_chunk)):
        sl = slice(lo, lo + per_chunk)
        np.savez(out / f"{name}_c5_{i}.npz", tiles=gen_c5[sl], obs_names=names[c5][sl])
    np.savez(out / f"{name}_c1.npz", tiles=gen_c1, obs_names=names[c1])
    pick = c5[np.random.default_rng(1).choice(len(c5), 8, replace=False)]
    _grid_png([tiles[pick, 0], gen_c5[np.searchsorted(c5, pick), 0]], out / f"{name}_grid.png")
    (out / f"{name}.json").write_text(json.dumps(record, indent=1, default=float))
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1, default=float))


def _save_chunks(out: Path, prefix: str, arrays: dict[str, np.ndarray], names: np.ndarray) -> None:
    """Tile sets ``(n, k, H, W, 3)`` over ``names``, in files under 16 MiB (what comes back from the GPU server)."""
    per_file, part, size = [], 0, 0
    for key, a in arrays.items():
        if per_file and size + a.nbytes > 14 * 2**20:
            np.savez(out / f"{prefix}_{part}.npz", obs_names=names, **dict(per_file))
            per_file, part, size = [], part + 1, 0
        per_file.append((key, a))
        size += a.nbytes
    np.savez(out / f"{prefix}_{part}.npz", obs_names=names, **dict(per_file))


# `train --method cdm --small`: RNA-CDM at a size two CPU cores train in tens of minutes (4.2M + 0.8M
# parameters; about 27 and 8 tiles/s on the dev VM at batch 16), 32-px base stage → 128 px.
SMALL_CDM = {
    "base": {
        "channels": [32, 64, 128],
        "attention": [False, True, True],
        "layers_per_block": 1,
        "token_dim": 64,
        "hidden": 64,
        "head_dim": 16,
    },
    "sr": {
        "channels": [16, 32, 64],
        "attention": [False, False, False],
        "layers_per_block": 1,
        "token_dim": 64,
        "hidden": 64,
        "head_dim": 16,
    },
}


def train_cdm(args, adata, tiles, units, out: Path) -> None:
    import torch

    section = adata.obs["section"].to_numpy()
    nets = {}
    if args.tiny:  # a CPU smoke run of this script: small networks, 12 C5 spots, 2 sampling steps
        # Enough levels that the middle block's self-attention sees 16 × 16 tokens, not 64 × 64 (slow on CPUs).
        small = {
            "channels": [32, 64, 64],
            "attention": [False, False, True],
            "layers_per_block": 1,
            "token_dim": 64,
            "hidden": 64,
        }
        nets = {"base": small, "sr": {**small, "channels": [32, 32, 64, 64], "attention": [False] * 4}}
        keep = np.r_[np.flatnonzero(np.isin(section, TRAIN_SECTIONS))[:16], np.flatnonzero(section == "C5")[:12]]
        adata, tiles, section = adata[keep].copy(), tiles[keep], section[keep]
        units = units.intersection(adata.obs_names)
    elif args.small:  # a CPU run of tens of minutes: 32-px base stage, narrow networks (the GPU size: 64 px)
        nets = {"base": dict(SMALL_CDM["base"]), "sr": dict(SMALL_CDM["sr"])}
    base_size = 32 if args.small else 64
    model = rp.models.CascadedDiffusion(adata, tiles, condition="vae", units=units, base_size=base_size, **nets)
    print(model, flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    sr_batch = args.batch_size if args.tiny or args.small else 64
    model.train(
        max_steps=10**9,
        max_time=args.minutes * 60,
        batch_size={"base": args.batch_size, "sr": sr_batch},
        lr=args.lr,
        warmup_steps=200,
        ema_decay=0.999,
        num_workers=args.workers,
        progress_bar=False,
        compile=args.compile,
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0
    info = model.train_info
    record = {
        "method": "cdm",
        "minutes": args.minutes,
        "wall_s": seconds,
        "train_info": info,
        "tiles_per_s": {s: v["steps"] * v["batch_size"] / v["seconds"] for s, v in info.items()},
        "config": {k: v for k, v in model.config.items() if not k.startswith("condition_")},
        "params_m": {s: sum(p.numel() for p in model.nets[s].parameters()) / 1e6 for s in model.stages},
        "history_last": {s: {k: v[-1] for k, v in h.items() if v} for s, h in model.history.items()},
        "history": model.history,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "tiny": bool(args.tiny),
        "small": bool(args.small),
    }
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1, default=float), flush=True)
    _write_json(out / "cdm.json", record)  # the training record comes back even if painting is cut short
    if args.save_model:
        # Painting everything takes minutes beyond the training: `paint` finishes it in a second command.
        model.save(args.save_model, overwrite=True)
        # What `paint` needs to know even if not one set gets painted here: nothing done yet, and how.
        _write_json(
            Path(args.save_model) / "painted.json", {"done": [], "tiny": bool(args.tiny), "per_spot": args.per_spot}
        )
    _paint_cdm(model, adata, tiles, section, out, args, record, "cdm.json")


def paint(args) -> None:
    """RNA-CDM's generation steps that a ``train --method cdm --save-model`` run left undone."""
    model = rp.models.CascadedDiffusion.load(args.model)
    adata, tiles, _ = _pairs(args.pairs)
    section = adata.obs["section"].to_numpy()
    state = Path(args.model, "painted.json")
    state = json.loads(state.read_text()) if state.is_file() else {}
    args.tiny = state.get("tiny", False)
    if args.tiny:  # the smoke run painted only its 12 C5 spots, with 2 sampling steps
        keep = np.flatnonzero(section == "C5")[:12]
        adata, tiles, section = adata[keep].copy(), tiles[keep], section[keep]
    args.per_spot = state.get("per_spot", args.per_spot)  # the training run's, which main was painted with
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # One record per command, named by how many sets were done before it: OUT folders merge without clashes.
    record = f"cdm_paint_{len(state.get('done', []))}.json"
    _paint_cdm(model, adata, tiles, section, out, args, {"method": "cdm", "model": str(args.model)}, record)


# RNA-CDM's generation steps, most needed first: (name, n_per_obs, seed, sampler, steps, guidance, other
# generate arguments). "main" paints --per-spot tiles a spot (the method's tiles); "immune" paints the
# immune-enriched profiles with main's seed, so each enriched tile shares its noise with the spot's first
# main tile; the rest, one tile a spot from seed 7, compare samplers (250-step DDIM against 25-step
# DPM-Solver++), guidance scales, and 10 unguided super-resolution steps (benchmarks/diffusion.py's
# cheaper recipe, a third of the FLOPs; on the toy set ρ −0.02, nearer real tiles) against 25 guided.
_CDM_STEPS = [
    ("main", None, 1, "dpm++", 25, 2.0, {}),
    ("immune", 1, 1, "dpm++", 25, 2.0, {}),
    ("w0", 1, 7, "dpm++", 25, 0.0, {}),
    ("dpm25", 1, 7, "dpm++", 25, 2.0, {}),
    ("ddim250", 1, 7, "ddim", 250, 2.0, {}),
    ("fast", 1, 7, "dpm++", 25, 2.0, {"sr_steps": 10, "sr_guidance_scale": 1.0}),
    ("w1", 1, 7, "dpm++", 25, 1.0, {}),
    ("w4", 1, 7, "dpm++", 25, 4.0, {}),
]


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float))
    tmp.replace(path)


def _savez(path: Path, **arrays) -> None:
    """``np.savez`` written atomically (a run cut off by the time limit leaves no half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def _paint_cdm(model, adata, tiles, section, out: Path, args, record: dict, record_name: str) -> None:
    """Paint the C5 spots for each of ``_CDM_STEPS`` not yet done, while time allows.

    ``args.deadline_minutes`` (from this process's start) stops before a step that would not end in time,
    its cost estimated from the seconds per tile, step and network pass measured so far (a short probe
    first); ``args.save_model``/``args.model``'s ``painted.json`` records what is done, so ``paint`` goes on
    from there. Each step's tiles are written as soon as they exist (``cdm_c5_<i>.npz``,
    ``cdm_extra_<name>.npz``: under 16 MiB each, what comes back from the GPU server).
    """
    import torch

    c5 = np.flatnonzero(section == "C5")
    names = adata.obs_names.to_numpy(str)[c5]
    sub = adata[c5]
    where = getattr(args, "save_model", None) or getattr(args, "model", None)
    state_dir = Path(where) if where else None
    state_file = state_dir / "painted.json" if state_dir else None
    done = json.loads(state_file.read_text())["done"] if state_file and state_file.is_file() else []
    gen = {"batch_size": args.gen_batch_size, "progress_bar": False}
    few = 2 if args.tiny else None
    deadline = _T0 + 60 * args.deadline_minutes if args.deadline_minutes else None
    record["generation"] = timings = record.get("generation", {})
    immune_file = Path(args.pairs).with_name("her2st_immune.npz")

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def passes(w):  # w = 1 is the plain conditional model: one network pass a step; otherwise two
        return 1 if w == 1 else 2

    # What one command may write to OUT (the GPU server returns 8 files, 16 MiB each, 64 MiB in all):
    # the record and a margin are kept aside.
    tile_bytes = int(np.prod(tiles.shape[2:]))
    per_file_bytes = 14 * 2**20
    limit_files = args.out_files - 1 if args.out_files else None
    limit_bytes = args.out_mib * 2**20 - 2**20 if args.out_mib else None
    written = {"files": 0, "bytes": 0}
    # seconds per tile × (base + SR steps × passes) / 2: a short probe, then each finished set's own rate
    t = time.perf_counter()
    model.generate(sub[:16], n_per_obs=1, seed=0, sampler="dpm++", steps=few or 5, guidance_scale=2.0, **gen)
    sync()
    rate = (time.perf_counter() - t) / (16 * (few or 5) * 2)
    for name, n, seed, sampler, steps, w, more in _CDM_STEPS:
        if name in done:
            continue
        if name == "immune" and not immune_file.is_file():
            print("no her2st_immune.npz (run `her2st.py enrich` first): the enrichment step is skipped", flush=True)
            continue
        n = n or args.per_spot
        steps = few or steps
        if few and "sr_steps" in more:
            more = {**more, "sr_steps": 1}
        # The probe ran both stages alike: each stage's steps × passes is priced as half of it.
        sr_work = more.get("sr_steps", steps) * passes(more.get("sr_guidance_scale", w))
        work = len(c5) * n * (steps * passes(w) + sr_work) / 2
        cost = rate * work
        if deadline and time.monotonic() + 1.2 * cost > deadline:
            print(f"{name}: left for `her2st.py paint` (about {cost:.0f} s; the deadline is near)", flush=True)
            timings[name] = {"skipped": "time", "estimated_s": cost}
            continue
        nbytes = len(c5) * n * tile_bytes
        files = -(-nbytes // per_file_bytes) + (name == "main")  # tile chunks (+ the grid)
        if (limit_files and written["files"] + files > limit_files) or (
            limit_bytes and written["bytes"] + nbytes > limit_bytes
        ):
            print(f"{name}: left for `her2st.py paint` (what one command returns is full)", flush=True)
            timings[name] = {"skipped": "output size"}
            continue
        written["files"] += files
        written["bytes"] += nbytes
        units = sub
        if name == "immune":
            imm = np.load(immune_file)
            # Under the spots' own names: a unit's noise follows its name, so these tiles share main's noise.
            units = sub.copy()
            units.obsm["X_vae"] = imm["X_vae_immune"][_positions(imm["obs_names"], names)]
        t = time.perf_counter()
        kw = {"n_per_obs": n, "seed": seed, "sampler": sampler, "steps": steps, "guidance_scale": w, **more}
        r = model.generate(units, **kw, **gen)
        sync()
        seconds = time.perf_counter() - t
        rate = seconds / work
        timings[name] = {"seconds": seconds, "tiles": int(r.shape[0] * r.shape[1]), **kw}
        print(f"{name}: {timings[name]}", flush=True)
        if name == "main":
            per_file = max(1, int(per_file_bytes // r[0].nbytes))
            for i, lo in enumerate(range(0, len(c5), per_file)):
                _savez(out / f"cdm_c5_{i}.npz", tiles=r[lo : lo + per_file], obs_names=names[lo : lo + per_file])
            pick = np.random.default_rng(1).choice(len(c5), min(8, len(c5)), replace=False)
            _grid_png([tiles[c5[pick], 0], r[pick, 0]], out / "cdm_grid.png")
            record["generate_tiles_per_s"] = r.shape[0] * r.shape[1] / seconds
        else:
            _savez(out / f"cdm_extra_{name}.npz", obs_names=names, **{name: r})
        done.append(name)
        if state_file:
            _write_json(state_file, {"done": done, "tiny": bool(args.tiny), "per_spot": args.per_spot})
        _write_json(out / record_name, record)
    _write_json(out / record_name, record)
    left = [s[0] for s in _CDM_STEPS if s[0] not in done and (s[0] != "immune" or immune_file.is_file())]
    if left:
        print(f"not painted yet: {left}; run `her2st.py paint --model {state_dir}` for them", flush=True)


def _positions(names: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``wanted`` in ``names`` (all present)."""
    pos = {n: i for i, n in enumerate(names)}
    return np.array([pos[w] for w in wanted])


LABELS = {
    "X_rnagan": "RNA-GAN",
    "X_gan": "GAN (noise)",
    "X_cdm": "RNA-CDM",
    "X_cdm_ddim250": "RNA-CDM DDIM-250",
    "X_cdm_dpm25": "RNA-CDM DPM++-25",
    "X_cdm_w0": "RNA-CDM w=0",
    "X_cdm_w1": "RNA-CDM w=1",
    "X_cdm_w4": "RNA-CDM w=4",
    "X_cdm_fast": "RNA-CDM DPM++-25, SR 10 unguided",
}
# Nuclei feature ↔ deconvolved cell type(s) whose proportion it should follow across spots.
COMPOSITION = [
    ("hematoxylin_fraction", ["Epithelial"]),
    ("mean_area", ["Epithelial"]),
    ("density", ["Epithelial", *IMMUNE]),
    ("small_round_fraction", IMMUNE),
]


def _load_runs(runs: Path, adata) -> tuple[list[str], dict[str, np.ndarray]]:
    """The train step's tile chunks into full-size ``obsm`` arrays (zeros where a spot has none).

    Returns the ``obsm`` keys of the methods (``X_rnagan``, ``X_gan``, ``X_cdm``, and RNA-CDM's
    sampler / guidance variants ``X_cdm_<variant>``) and the immune-enriched tiles by C5 spot name.
    """

    def full(tiles, names):
        idx = adata.obs_names.get_indexer(names)
        if (idx < 0).any():
            raise ValueError(f"{runs}: {int((idx < 0).sum())} spots are not in the expression table.")
        a = np.zeros((adata.n_obs, *tiles.shape[1:]), np.uint8)
        a[idx] = tiles
        return a

    keys, immune = [], {}
    # RNA-GAN variants trained with --name rnagan-<tag> (e.g. another option) beside the methods
    variants = sorted({p.name.split("_c5_")[0] for p in runs.glob("rnagan-*_c5_*.npz")})
    for method in ("rnagan", "gan", "cdm", *variants):
        parts = [np.load(p) for p in sorted(runs.glob(f"{method}_c5_*.npz"))]
        if parts:  # chunks split the spots
            adata.obsm[f"X_{method}"] = full(
                np.concatenate([p["tiles"] for p in parts]), np.concatenate([p["obs_names"] for p in parts])
            )
            keys.append(f"X_{method}")
    for part in sorted(runs.glob("cdm_extra_*.npz")):
        d = np.load(part)
        for variant in d.files:
            if variant == "immune":
                immune = {"names": d["obs_names"], "tiles": d["immune"]}
            elif variant != "obs_names":
                adata.obsm[f"X_cdm_{variant}"] = full(d[variant], d["obs_names"])
                keys.append(f"X_cdm_{variant}")
    return keys, immune


def _composition(adata, keys, c5, mpp, contrasts=(), n_boot: int = 0):
    """Per spot, nuclei features of each source's C5 tiles against the spot's deconvolved cell mix
    (``rp.metrics.composition_agreement``): tidy ρ rows, and paired differences for ``contrasts``."""
    import pandas as pd

    props = pd.DataFrame(adata.obsm["cell_type_proportions"], index=adata.obs_names).iloc[c5].reset_index(drop=True)
    tiles = {"real (held out)": adata.obsm["tiles"][c5, :1], **{_named(k): adata.obsm[k][c5] for k in keys}}
    rows = rp.metrics.composition_agreement(
        tiles,
        props,
        dict(COMPOSITION),
        mpp=mpp,
        contrasts=[(_named(a), _named(b)) for a, b in contrasts],
        n_boot=n_boot,
        progress_bar=False,
    )
    rows["metric"] = rows["metric"].map(_short_metric)
    return rows


def _short_metric(metric: str) -> str:
    """A composition metric ``ρ(feature, type + type …)…`` with its cell types named by what they stand for."""
    for feat, cells in COMPOSITION:
        long = f"ρ({feat}, {' + '.join(cells)})"
        if metric.startswith(long):
            kind = cells[0] if len(cells) == 1 else "immune" if cells == IMMUNE else "epithelial + immune"
            return f"ρ({feat}, {kind})" + metric.removeprefix(long)
    return metric


def _enrichment(immune: dict, adata, mpp, out: Path) -> dict:
    """RNA-CDM's experiment: the same C5 spots and noise, plain against immune-enriched profiles."""
    from scipy.stats import wilcoxon

    # the spots' first RNA-CDM tiles: painted from the same noise as the enriched ones (seed and draw)
    plain = adata.obsm["X_cdm"][adata.obs_names.get_indexer(immune["names"])][:, :1]
    enriched = immune["tiles"]
    feats = ["density", "small_round_fraction", "hematoxylin_fraction", "mean_area"]
    a = rp.metrics.nuclei(plain[:, 0], mpp=mpp, progress_bar=False)[feats].to_numpy()
    b = rp.metrics.nuclei(enriched[:, 0], mpp=mpp, progress_bar=False)[feats].to_numpy()
    result = {"n_spots": len(immune["names"])}
    for j, f in enumerate(feats):
        d = b[:, j] - a[:, j]
        ok = np.isfinite(d)
        result[f] = {
            "plain_mean": float(np.nanmean(a[:, j])),
            "enriched_mean": float(np.nanmean(b[:, j])),
            "mean_change": float(np.nanmean(d)),
            "fraction_increased": float(np.mean(d[ok] > 0)),
            "wilcoxon_p": float(wilcoxon(d[ok]).pvalue) if ok.sum() > 5 and np.any(d[ok]) else None,
        }
    (out / "enrichment.json").write_text(json.dumps(result, indent=1))
    order = np.random.default_rng(1).choice(len(plain), min(8, len(plain)), replace=False)  # not the best cases
    _grid_png([plain[order, 0], enriched[order, 0]], out / "enrichment_grid.png")
    return result


def _print_table(table, **kw) -> None:
    """A markdown table when ``tabulate`` is installed (pandas needs it), else plain text."""
    try:
        print(table.to_markdown(**kw))
    except ImportError:
        print(table.to_string())


def _evaluation_data(args):
    """The expression table with real tiles, the runs' tiles in ``obsm``, ``eval_split`` and fidelity labels.

    Returns ``(adata, keys, immune, c5, train_rows)``: generated-tile keys, immune-enriched tiles,
    rows of the held-out C5 spots, and rows of the C2–C4 training spots with an image.
    """
    import anndata as ad

    adata = ad.read_h5ad(Path(args.dir) / "her2st_expression.h5ad")
    adata.obs["eval_split"] = np.where(
        adata.obs["section"].isin(TRAIN_SECTIONS), "train", np.where(adata.obs["section"] == "C5", "test", "none")
    )
    keys, immune = _load_runs(Path(args.runs), adata)
    c5 = np.flatnonzero((adata.obs["eval_split"] == "test").to_numpy())
    if getattr(args, "spots", False):  # a smoke run on the spots a tiny train step painted
        made = np.flatnonzero(adata.obsm[keys[0]].reshape(adata.n_obs, -1).any(1))
        c5 = np.intersect1d(c5, made)
        adata.obs.loc[
            adata.obs_names[np.setdiff1d(np.flatnonzero(adata.obs["eval_split"] == "test"), c5)], "eval_split"
        ] = "none"
    train_rows = np.flatnonzero((adata.obs["eval_split"] == "train").to_numpy() & adata.obs["has_image"].to_numpy())
    if args.label == "epithelial":
        # Labels shared by all sections (HER2ST's clusters were made per section): the spot's stereoscope
        # epithelial share in terciles, cut at the training spots' quantiles — tumour nests vs stroma.
        epi = adata.obsm["cell_type_proportions"]["Epithelial"].to_numpy()
        cuts = np.nanquantile(epi[train_rows], [1 / 3, 2 / 3])
        level = np.array(["low", "mid", "high"])[np.searchsorted(cuts, np.nan_to_num(epi))]
        adata.obs["epithelial"] = np.where(np.isnan(epi), "none", level)  # C1 has no proportions
    return adata, keys, immune, c5, train_rows


def _contrasts(keys: list[str]) -> list[tuple[str, str]]:
    """The paired fidelity comparisons the issues ask for: RNA-GAN against the GAN, RNA-CDM against RNA-GAN;
    RNA-CDM's fast recipe against its default (the same noise); and each RNA-GAN variant
    (``--name rnagan-<tag>``) against RNA-GAN and the GAN."""
    wanted = [("X_rnagan", "X_gan"), ("X_cdm", "X_rnagan"), ("X_cdm", "X_gan"), ("X_cdm_fast", "X_cdm_dpm25")]
    wanted += [(k, base) for k in keys if k.startswith("X_rnagan-") for base in ("X_rnagan", "X_gan")]
    return [(a, b) for a, b in wanted if a in keys and b in keys]


def _named(method: str) -> str:
    """Display name of a method or of a contrast ``"a − b"``."""

    def one(key: str) -> str:
        if key.startswith("X_rnagan-"):
            return f"RNA-GAN ({key.removeprefix('X_rnagan-')})"
        return LABELS.get(key, key)

    return " − ".join(one(part) for part in method.split(" − "))


def evaluate(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adata, keys, immune, c5, train_rows = _evaluation_data(args)
    mpp = 224 * 0.686 / adata.obsm["tiles"].shape[2]  # 224-px patches at HER2ST's ~0.686 µm/px, resized
    encoder = rp.models.TileEncoder(stem="large")
    real = adata.obsm["tiles"]
    t0 = time.perf_counter()
    encoder.fit(real[train_rows, 0], epochs=args.encoder_epochs, batch_size=128, progress_bar=False, seed=0)
    print(
        f"TileEncoder: {args.encoder_epochs} epochs on {len(train_rows)} real C2–C4 tiles in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    report = rp.tl.evaluate(
        adata,
        keys,
        label_key=args.label,
        split_key="eval_split",
        encoder=encoder,
        inception=args.inception,
        mpp=mpp,
        n_boot=args.n_boot,
        contrasts=_contrasts(keys),
        # per spot, nuclei against the deconvolved cell mix: ρ rows, and paired differences for the contrasts
        composition=dict(COMPOSITION) if "cell_type_proportions" in adata.obsm else None,
    )
    report["method"] = report["method"].map(_named)
    report["metric"] = report["metric"].map(_short_metric)
    report.to_csv(out / "report.csv", index=False)
    main_keys = [k for k in keys if k in ("X_rnagan", "X_gan", "X_cdm")]
    rp.pl.evaluation(
        report[report["method"].isin(["real (held out)", "nearest neighbour", *[LABELS[k] for k in main_keys]])],
        title="HER2ST C5 (held out), equal H100 time per method",
        show=False,
        save=out / "evaluation.png",
    )
    pick = np.random.default_rng(1).choice(c5, min(8, len(c5)), replace=False)
    rows = [real[pick, 0]]
    d = ((adata.obsm["X_vae"][pick, None] - adata.obsm["X_vae"][None, train_rows]) ** 2).sum(-1)
    rows.append(real[train_rows[d.argmin(1)], 0])
    rows += [adata.obsm[k][pick, 0] for k in main_keys]
    _grid_png(rows, out / "c5_grid.png")
    table = report.pivot_table(index="metric", columns="method", values="value", sort=False)
    _print_table(table, floatfmt=".3f")
    if immune and "X_cdm" in adata.obsm:
        print("immune enrichment (same spots, same noise):", json.dumps(_enrichment(immune, adata, mpp, out), indent=1))
    print(f"grid rows: real C5 / nearest neighbour / {' / '.join(main_keys)}; wrote {out}")


def fidelity(args) -> None:
    """Condition fidelity and the paired differences between generators, once per encoder seed.

    The SimCLR encoder's run-to-run spread is as large as the gap between generators, so the
    comparison is repeated with encoders trained from several seeds (each scoring all methods on
    the same C5 spots); a gap that holds its sign in every seed, with paired intervals above 0, is
    established.
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adata, keys, _, _, train_rows = _evaluation_data(args)
    keys = [k for k in keys if k in ("X_rnagan", "X_gan", "X_cdm") or k.startswith("X_rnagan-")]
    real = adata.obsm["tiles"]
    frames = []
    mpp = 224 * 0.686 / real.shape[2]
    for seed in [*args.seeds, *(["nuclei"] if args.nuclei_features else [])]:
        t0 = time.perf_counter()
        encoder = None  # nuclei features (rp.metrics.NucleiFeatures): nothing to train
        if seed != "nuclei":
            encoder = rp.models.TileEncoder(stem="large").fit(
                real[train_rows, 0], epochs=args.encoder_epochs, batch_size=128, progress_bar=False, seed=seed
            )
        report = rp.tl.evaluate(
            adata,
            keys,
            label_key=args.label,
            split_key="eval_split",
            features="nuclei" if seed == "nuclei" else "encoder",
            encoder=encoder,
            mpp=mpp,
            nuclei=False,
            n_boot=args.n_boot,
            contrasts=_contrasts(keys),
            seed=seed if isinstance(seed, int) else 0,
        )
        report["method"] = report["method"].map(_named)
        report["encoder_seed"] = seed
        frames.append(report)
        print(f"encoder {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    import pandas as pd

    report = pd.concat(frames, ignore_index=True)
    tmp = out / "fidelity.csv.tmp"
    report.to_csv(tmp, index=False)
    tmp.replace(out / "fidelity.csv")
    fid = report[report["metric"].str.startswith("condition fidelity")].copy()
    # one row per metric, the nuclei-feature column beside the encoder seeds'
    fid["metric"] = fid["metric"].str.replace(" (nuclei features)", "").str.replace(", nuclei features", "")
    fid["metric"] = fid["metric"].str.replace("(nuclei features, ", "(")
    fid["cell"] = [
        f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "") + (f" p={p:.3f}" if np.isfinite(p) else "")
        for v, lo, hi, p in zip(
            fid["value"],
            fid["ci_low"],
            fid["ci_high"],
            fid.get("p_value", pd.Series(np.nan, index=fid.index)),
            strict=True,
        )
    ]
    table = fid.pivot_table(
        index=["metric", "method"], columns="encoder_seed", values="cell", aggfunc="first", sort=False
    )
    _print_table(table)
    print(f"wrote {out / 'fidelity.csv'}")


def composition(args) -> None:
    """Nuclei composition agreement on C5 for one or several runs, without training an encoder.

    Per source, the Spearman ρ over the C5 spots between a nuclei feature of its tiles (mean over a
    spot's tiles) and the spot's deconvolved cell share. Unlike condition fidelity, whose classifier
    is trained on real tiles and so also scores how far generated tiles are from real ones, a rank
    correlation within one source is unchanged by a shift of all its tiles: it asks only whether
    tiles of epithelial- or immune-rich spots differ the way real ones do. With 181 spots, |ρ| under
    about 0.15 is within chance (95 %).
    """
    import pandas as pd

    frames = []
    for run in args.runs:
        adata, keys, _, c5, _ = _evaluation_data(argparse.Namespace(dir=args.dir, runs=run, label="epithelial"))
        keys = [k for k in keys if k in ("X_rnagan", "X_gan", "X_cdm") or k.startswith("X_rnagan-")]
        mpp = 224 * 0.686 / adata.obsm["tiles"].shape[2]
        report = _composition(adata, keys, c5, mpp, contrasts=_contrasts(keys), n_boot=args.n_boot)
        report.insert(0, "run", run)
        frames.append(report)
    report = pd.concat(frames, ignore_index=True)
    if args.csv:
        tmp = Path(args.csv).with_suffix(".tmp")
        report.to_csv(tmp, index=False)
        tmp.replace(args.csv)
    rho = report[~report["method"].str.contains(" − ")]
    _print_table(rho.pivot_table(index=["run", "method"], columns="metric", values="value", sort=False), floatfmt=".3f")
    diff = report[report["method"].str.contains(" − ")].copy()
    if len(diff):
        print(f"\npaired differences in ρ, the same spots resampled ({args.n_boot} times; 95 % intervals):")
        diff["cell"] = [
            f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            for v, lo, hi in zip(diff["value"], diff["ci_low"], diff["ci_high"], strict=True)
        ]
        _print_table(
            diff.pivot_table(index=["run", "method"], columns="metric", values="cell", aggfunc="first", sort=False)
        )


def checkerboard(args) -> None:
    """``rp.metrics.checkerboard`` of real C5 / C2–C4 patches and of every generator's C5 tiles in ``--runs``."""
    import glob

    pairs = np.load(Path(args.dir) / "her2st_pairs.npz", allow_pickle=False)
    section, has = pairs["section"], pairs["has_image"]
    sets = {
        "real C5": pairs["tiles"][(section == "C5") & has],
        "real C2-C4": pairs["tiles"][np.isin(section, TRAIN_SECTIONS) & has],
    }
    for run in args.runs:
        variants = sorted({Path(f).name.split("_c5_")[0] for f in glob.glob(str(Path(run) / "rnagan-*_c5_*.npz"))})
        for method in ("rnagan", "gan", "cdm", *variants):
            files = sorted(glob.glob(str(Path(run) / f"{method}_c5_*.npz")))
            if files:
                sets[f"{method} ({run})"] = np.concatenate([np.load(f)["tiles"] for f in files])
    results = {}
    for periods in ((2, 4, 8), tuple(2**i for i in range(1, 6))):
        for name, t in sets.items():
            if max(periods) > t.shape[-2] // 4:
                continue
            s = rp.metrics.checkerboard(t, periods, n_boot=args.n_boot)
            results[f"{name}, periods {periods}"] = {
                "value": s.value,
                "ci": [s.ci_low, s.ci_high],
                "per_period": s.per_period,
                "n_tiles": s.n_tiles,
            }
            print(
                f"{name:40s} periods {periods}: {s.value:6.2f} dB [{s.ci_low:.2f}, {s.ci_high:.2f}] "
                + " ".join(f"{k}:{v:.1f}" for k, v in s.per_period.items()),
                flush=True,
            )
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(args.json)


def stages(args) -> None:
    """Which stage of a saved RNA-CDM paints the noise: base images and final tiles against real ones.

    Paints ``--n`` C5 spots (one tile each) with the base stage's images returned, and compares each
    stage with the real tiles at its own resolution: the base images with the real tiles box-downsampled
    to the base size (as the base stage learnt them), the final tiles with the real ones. Roughness is the
    mean absolute difference between neighbouring pixels (0–255). Writes ``stages.png`` (rows: real,
    real at base size, base images, final tiles; the small ones enlarged) and ``stages.json``.
    """
    import torch
    from PIL import Image
    from roughness import roughness

    model = rp.models.CascadedDiffusion.load(args.model)
    adata, tiles, has = _pairs(args.pairs)
    c5 = np.flatnonzero((adata.obs["section"].to_numpy() == "C5") & has)
    keep = np.random.default_rng(0).choice(c5, size=min(args.n, len(c5)), replace=False)
    real = tiles[keep, 0]
    b, size = model.config["base_size"], model.config["image_size"]
    if real.shape[1] != size:
        raise SystemExit(f"the model paints {size}-px tiles, the pairs hold {real.shape[1]}-px ones")
    t0 = time.perf_counter()
    final, low = model.generate(
        adata[keep], n_per_obs=1, seed=1, batch_size=args.gen_batch_size, return_low_res=True, progress_bar=False
    )
    seconds = time.perf_counter() - t0
    final, low = final[:, 0], low[:, 0]
    real_low = (
        torch.nn.functional.interpolate(torch.from_numpy(real).permute(0, 3, 1, 2).float(), size=(b, b), mode="area")
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
        .numpy()
    )
    record = {
        "model": str(args.model),
        "n_spots": len(keep),
        "base_size": b,
        "image_size": size,
        "seconds": seconds,
        "roughness": {
            "real": roughness(real),
            "real at base size": roughness(real_low),
            "base images": roughness(low),
            "final tiles": roughness(final),
        },
        "mean colour": {
            "real": real.reshape(-1, 3).mean(0).tolist(),
            "base images": low.reshape(-1, 3).mean(0).tolist(),
            "final tiles": final.reshape(-1, 3).mean(0).tolist(),
        },
    }
    print(json.dumps(record, indent=1), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def big(x: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(Image.fromarray(t).resize((size, size), Image.NEAREST)) for t in x])

    k = min(8, len(keep))
    _grid_png([real[:k], big(real_low[:k]), big(low[:k]), final[:k]], out / "stages.png")
    _write_json(out / "stages.json", record)


def _positive(text: str) -> int:
    """argparse type: an integer ≥ 1 (checked before training, not after)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--latent", type=int, default=64)
    p = sub.add_parser("train")
    p.add_argument("--pairs", default=".gpu_data/her2st_pairs.npz")
    p.add_argument("--method", choices=["rnagan", "gan", "cdm"], required=True)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--upsample", default="transpose")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--per-spot", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4, help="cdm only")
    p.add_argument("--compile", action="store_true", help="cdm only: torch.compile the denoisers")
    p.add_argument("--tiny", action="store_true", help="cdm only: a CPU smoke run of the script")
    p.add_argument(
        "--small", action="store_true", help="cdm only: narrow networks, 32-px base (a CPU run of tens of minutes)"
    )
    p.add_argument(
        "--save-model", default=None, help="cdm only: save the trained model here, for `paint` to finish the tiles"
    )
    p.add_argument(
        "--deadline-minutes",
        type=float,
        default=None,
        help="cdm only: paint only what ends this many minutes after the start (the GPU server's 10-minute limit)",
    )
    p.add_argument("--out-files", type=int, default=None, help="cdm only: write at most this many files to --out")
    p.add_argument("--gen-batch-size", type=_positive, default=256, help="cdm only: tiles denoised at once (CPU: 8)")
    p.add_argument("--out-mib", type=float, default=None, help="cdm only: write at most this many MiB to --out")
    p.add_argument("--gp-every", type=int, default=1, help="gan/rnagan: lazy gradient penalty every k critic steps")
    p.add_argument("--aux-weight", type=float, default=0.0, help="rnagan: TileGAN(aux_weight=), AC-GAN's loss")
    p.add_argument("--seed", type=int, default=0, help="training seed (weights, batches, noise)")
    p.add_argument(
        "--name", default=None, help="file stem of the outputs (default: the method; rnagan-<tag> for a variant)"
    )
    p.add_argument("--out", required=True)
    p = sub.add_parser("paint", help="RNA-CDM: the C5 tiles a `train --method cdm --save-model` run left undone")
    p.add_argument("--model", required=True, help="the folder given to train --save-model")
    p.add_argument("--pairs", default=".gpu_data/her2st_pairs.npz")
    p.add_argument("--per-spot", type=int, default=4)
    p.add_argument("--deadline-minutes", type=float, default=None)
    p.add_argument("--out-files", type=int, default=None, help="write at most this many files to --out")
    p.add_argument("--out-mib", type=float, default=None, help="write at most this many MiB to --out")
    p.add_argument("--gen-batch-size", type=_positive, default=256, help="tiles denoised at once (CPU: 8)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("stages", help="RNA-CDM: base images and final tiles of a saved model against real ones")
    p.add_argument("--model", required=True, help="the folder given to train --save-model")
    p.add_argument("--pairs", default=".gpu_data/her2st_pairs.npz")
    p.add_argument("--n", type=int, default=32, help="C5 spots painted (one tile each)")
    p.add_argument("--gen-batch-size", type=_positive, default=8)
    p.add_argument("--out", required=True)
    p = sub.add_parser("enrich")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--strength", type=float, default=1.0)
    p = sub.add_parser("evaluate")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--runs", required=True, help="folder with the train step's outputs")
    p.add_argument("--out", default="benchmarks/out/her2st")
    p.add_argument("--encoder-epochs", type=int, default=30)
    p.add_argument("--n-boot", type=int, default=100)
    p.add_argument("--inception", action="store_true")
    p.add_argument(
        "--label",
        choices=["cluster", "epithelial"],
        default="epithelial",
        help="condition-fidelity labels: terciles of the epithelial share (shared by all sections), or HER2ST's "
        "clusters (made per section; 3 training spots have none)",
    )
    p.add_argument("--spots", action="store_true", help="evaluate only the C5 spots the runs painted (smoke runs)")
    p = sub.add_parser("fidelity", help="condition fidelity and paired generator differences, per encoder seed")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--runs", required=True, help="folder with the train step's outputs")
    p.add_argument("--out", default="benchmarks/out/her2st_fidelity")
    p.add_argument(
        "--seeds", type=int, nargs="*", default=[0, 1, 2], help="encoder seeds (none: --nuclei-features only)"
    )
    p.add_argument("--encoder-epochs", type=int, default=30)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--label", choices=["cluster", "epithelial"], default="epithelial")
    p.add_argument("--nuclei-features", action="store_true", help="also score in nuclei-feature space (no training)")
    p = sub.add_parser("composition", help="ρ between generated tiles' nuclei and each C5 spot's cell mix")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--runs", nargs="+", required=True, help="folders with the train step's outputs")
    p.add_argument("--csv", default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    p = sub.add_parser("checkerboard", help="checkerboard artifacts (dB) of real and generated C5 tiles")
    p.add_argument("--dir", default=".gpu_data")
    p.add_argument("--runs", nargs="+", required=True, help="folders with the train step's outputs")
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--json", default=None)
    args = ap.parse_args()
    commands = {"prepare": prepare, "enrich": enrich, "train": train, "evaluate": evaluate, "fidelity": fidelity}
    commands |= {"checkerboard": checkerboard, "composition": composition, "paint": paint, "stages": stages}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
