"""``rnapaint virtual-he``: a virtual H&E section for a spatial .h5ad or SpatialData .zarr, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from ..io.folder_swap import swap_in
from .pipeline import _check_output_folder, _clear_errors, _fail, _read_units, _write_atomic


def _read(path: Path):
    if path.suffix.lower() == ".zarr" and path.is_dir():
        import spatialdata as sd

        import rnapaint as rp

        with _clear_errors():
            return rp.io.from_spatialdata(sd.read_zarr(path))
    return _read_units(path)


def _write_zarr(adata, out: Path, library_key: str | None) -> None:
    """The section as SpatialData, built in a hidden folder beside ``out`` and renamed into place."""
    import rnapaint as rp

    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _clear_errors():
            rp.io.to_spatialdata(adata, library_key=library_key).write(tmp)
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def virtual_he(
    spots: Path = typer.Argument(..., help="Spatial .h5ad (obsm['spatial']) or a SpatialData .zarr."),
    model: Path = typer.Option(..., help="Trained generator directory (rnagan, gan or cdm)."),
    out: Path = typer.Option(..., help="Output: a SpatialData .zarr, or an .h5ad with the image in uns['spatial']."),
    library_id: str | None = typer.Option(None, help="Section to paint (default: the only one)."),
    n_draws: int = typer.Option(1, help="Draws per spot: > 1 adds a spread map."),
    mpp: float = typer.Option(2.0, help="µm per pixel of the virtual image."),
    tile_um: float | None = typer.Option(None, help="Physical side of a painted patch in µm (default: the pitch)."),
    key: str = typer.Option("virtual_he", help="Image key."),
    seed: int = typer.Option(0, help="Random seed."),
    batch_size: int = typer.Option(64, help="Spots painted at once."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
) -> None:
    """Paint a virtual H&E section from the spots' expression and stitch it on the section's scale."""
    import rnapaint as rp

    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite to replace it.")
    if out.suffix.lower() not in (".zarr", ".h5ad"):
        _fail(f"--out must end in .zarr (SpatialData) or .h5ad, got {out.name!r}.")
    _check_output_folder(out, "--out")
    adata = _read(spots)
    with _clear_errors():
        m = rp.models.load_model(model)
        rp.tl.virtual_he(
            adata,
            m,
            library_id,
            n_draws=n_draws,
            mpp=mpp,
            tile_um=tile_um,
            key_added=key,
            seed=seed,
            batch_size=batch_size,
            overwrite=True,
        )
    lib = adata.uns[key]["library_id"]
    if out.suffix.lower() == ".zarr":
        library_key = next((c for c in ("library_id", "section", "sample", "batch") if c in adata.obs), None)
        _write_zarr(adata[adata.obs[library_key].astype(str) == lib] if library_key else adata, out, library_key)
    else:
        _write_atomic(out, adata.write_h5ad)
    typer.echo(f"virtual H&E of {lib} ({adata.uns[key]['grid']} grid) in {out}.")
