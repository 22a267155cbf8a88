"""Tiling and tile-loading throughput.

(a) ``rp.pp.tile_slides`` tiles/s per core on copies of a real slide (CMU-1-Small-Region.svs);
(b) tiles/s a DataLoader delivers from a TileStore at 256 px with augmentation, for several worker
counts (the tiles issue asks for ≥ 3,000 tiles/s on a 16-core GPU server), in two modes:
``worker`` (each worker augments its tiles and sends float32) and ``device`` (workers only read and
send uint8; each batch is moved to ``--device`` and augmented there by ``PairedTiles.finish``, which
is how the generators train — that step is inside the timed loop, so on the CPU it costs the main
process, on a GPU it is a few kernels); ``none`` times the workers alone (uint8, no augmentation).

Usage::

    python benchmarks/tiles.py                      # data from $RNAPAINT_DATA or ../shared/data
    python benchmarks/tiles.py --workers 1 4 8 16 --json out.json

Prints a markdown table last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import rnapaint as rp
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import rnapaint as rp


def _slide_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    root = os.environ.get("RNAPAINT_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return Path(root) / "wsi" / "CMU-1-Small-Region.svs"


def bench_tiling(slide: Path, copies: int, n_jobs: int, work: Path) -> dict:
    import anndata as ad
    import pandas as pd

    paths = []
    for i in range(copies):
        p = work / f"slide{i}{slide.suffix}"
        shutil.copy(slide, p)
        paths.append(str(p))
    a = ad.AnnData(obs=pd.DataFrame({"slide": paths}, index=[f"u{i}" for i in range(copies)]))
    t0 = time.perf_counter()
    rp.pp.tile_slides(
        a,
        store=work / f"tiles_{n_jobs}.zarr",
        tile_size=256,
        mpp=0.5,
        max_tiles=None,
        n_jobs=n_jobs,
        progress_bar=False,
    )
    dt = time.perf_counter() - t0
    n = int(a.obs["n_tiles"].sum())
    return {
        "what": "tile_slides",
        "n_jobs": n_jobs,
        "slides": copies,
        "tiles": n,
        "seconds": dt,
        "tiles_per_s": n / dt,
        "tiles_per_s_per_core": n / dt / n_jobs,
    }


def make_store(slide: Path, n_tiles: int, work: Path) -> Path:
    """A store of n_tiles real 256 px tiles (the slide's tissue tiles, repeated)."""
    import anndata as ad
    import pandas as pd

    src = work / "src.zarr"
    a = ad.AnnData(obs=pd.DataFrame({"slide": [str(slide)]}, index=["u0"]))
    rp.pp.tile_slides(a, store=src, tile_size=256, mpp=0.5, max_tiles=None, progress_bar=False)
    s = rp.data.TileStore.open(src)
    tiles = s[np.arange(len(s))]
    out = rp.data.TileStore.create(work / "bench.zarr", 256, overwrite=True)
    reps = int(np.ceil(n_tiles / len(tiles)))
    units = [f"u{i % 64}" for i in range(n_tiles)]
    big = np.concatenate([tiles] * reps)[:n_tiles]
    out.append(big, pd.DataFrame({"unit": units, "slide": "s", "x": np.arange(n_tiles), "y": 0, "mpp": 0.5}))
    return work / "bench.zarr"


def bench_loader(store: Path, workers: int, batches: int, batch_size: int, augment_on: str, device: str) -> dict:
    import anndata as ad
    import pandas as pd
    import torch

    units = rp.data.TileStore.open(store).units
    adata = ad.AnnData(X=np.zeros((len(units), 2048), np.float32), obs=pd.DataFrame(index=units))
    # "none": uint8 tiles as stored, no augmentation anywhere — what the workers alone deliver.
    ds = rp.data.PairedTiles(
        store, adata, augment=augment_on != "none", augment_on="worker" if augment_on == "worker" else "device"
    )
    dl = rp.data.tile_loader(ds, batch_size=batch_size, num_workers=workers, seed=0)
    gen = torch.Generator().manual_seed(0)

    def take(it):
        b = next(it)
        x = b["image"].to(device, non_blocking=True)
        if augment_on == "device":
            x = ds.finish(x, gen)
        return len(x)

    it = iter(dl)
    for _ in range(min(5, batches)):  # warm-up: worker start, first prefetches
        take(it)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            n += take(it)
        except StopIteration:
            it = iter(dl)
            n += take(it)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "what": "loader",
        "augment_on": augment_on,
        "device": device,
        "workers": workers,
        "batch": batch_size,
        "tiles": n,
        "seconds": dt,
        "tiles_per_s": n / dt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", default=None, help="slide to tile (default: the shared CMU slide)")
    ap.add_argument("--copies", type=int, default=4, help="slide copies for the tiling benchmark")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--store-tiles", type=int, default=4096)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--augment-on", nargs="+", default=["device", "worker"], choices=["device", "worker", "none"])
    ap.add_argument("--device", default=None, help="where batches go (default: cuda if available, else cpu)")
    ap.add_argument("--skip-tiling", action="store_true", help="only the loader benchmark")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    slide = _slide_path(args.slide)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for j in [] if args.skip_tiling else sorted(set(args.jobs)):
            rows.append(bench_tiling(slide, args.copies, j, work))
            print(rows[-1], flush=True)
        store = make_store(slide, args.store_tiles, work)
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        for mode in args.augment_on:
            for w in args.workers:
                rows.append(bench_loader(store, w, args.batches, args.batch_size, mode, device))
                print(rows[-1], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1))
    print(f"\nmachine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; slide {slide.name}")
    print("| benchmark | setting | tiles | seconds | tiles/s | tiles/s per core |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["what"] == "tile_slides":
            print(
                f"| tile_slides 256 px @ 0.5 µm/px | {r['n_jobs']} process(es), {r['slides']} slides "
                f"| {r['tiles']} | "
                f"{r['seconds']:.2f} | {r['tiles_per_s']:.0f} | {r['tiles_per_s_per_core']:.0f} |"
            )
        else:
            what = {
                "worker": "+ augmentation in workers",
                "device": f"+ augmentation on {r['device']}",
                "none": "uint8, no augmentation",
            }[r["augment_on"]]
            print(
                f"| DataLoader 256 px {what} | {r['workers']} workers, batch {r['batch']} | "
                f"{r['tiles']} | "
                f"{r['seconds']:.2f} | {r['tiles_per_s']:.0f} | {r['tiles_per_s'] / max(1, r['workers']):.0f} |"
            )


if __name__ == "__main__":
    main()
