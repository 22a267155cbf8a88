"""HER2-positive breast cancer spatial transcriptomics (Andersson et al. 2021), legacy ST arrays."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validation import check_nonnegative
from ..io.expression import read_expression_table
from ._root import data_dir

SOURCE = "the HER2ST study (Andersson et al., Nat Commun 2021; GitHub almaan/her2st, Zenodo 3957257)"


def _spot_ids(x, y) -> pd.Index:
    return pd.Index([f"{int(a)}x{int(b)}" for a, b in zip(x, y, strict=True)])


def _section_labels(root: Path, section: str, spots: pd.Index) -> pd.Series | None:
    # Pathologist labels are keyed by (fractional) array coordinates: round to the spot grid.
    f = root / "data" / "ST-pat" / "lbl" / f"{section}_labeled_coordinates.tsv"
    if not f.is_file():
        return None
    lbl = pd.read_csv(f, sep="\t").dropna(subset=["x", "y"])
    lbl.index = _spot_ids(lbl["x"].round(), lbl["y"].round())
    lbl = lbl[~lbl.index.duplicated()]
    return lbl["label"].reindex(spots)


def _section_clusters(root: Path, section: str, spots: pd.Index) -> pd.Series | None:
    f = root / "res" / "ST-cluster" / "lbl" / f"{section}-cluster-annotation.tsv.gz"
    if not f.is_file():
        return None
    cl = pd.read_csv(f, sep="\t", index_col=0)
    cl.index = _spot_ids(cl["x"], cl["y"])
    return cl["label"].astype(str).reindex(spots)


def _section_proportions(root: Path, section: str, spots: pd.Index) -> pd.DataFrame | None:
    f = root / "res" / "ST-deconv" / "props" / "major" / f"{section}-proportion.tsv"
    if not f.is_file():
        return None
    return pd.read_csv(f, sep="\t", index_col=0).reindex(spots)


def _section_image(root: Path, section: str) -> Path | None:
    folder = root / "data" / "ST-imgs" / section[0] / section
    jpgs = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    return jpgs[0] if jpgs else None


def _spatial_entry(image: Path, obs: pd.DataFrame, hires_max: int) -> dict:
    """scanpy's ``uns['spatial'][library]`` for one section: a downscaled copy, scale factors, the source."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(image) as img:
        w, h = img.size
        f = min(1.0, hires_max / max(w, h))
        hires = np.asarray(img.convert("RGB").resize((round(w * f), round(h * f)), Image.Resampling.BOX))
    # Legacy ST spots are 100 µm wide, 200 µm centre to centre: the array pitch gives the scale.
    pitch = np.polyfit(obs["array_x"].to_numpy(float), obs["pixel_x"].to_numpy(float), 1)[0]
    mpp = 200.0 / abs(pitch)
    return {
        "images": {"hires": hires},
        "scalefactors": {"tissue_hires_scalef": f, "spot_diameter_fullres": 100.0 / mpp},
        "metadata": {"source_image_path": str(image), "mpp": mpp},
    }


def her2st(
    root: str | os.PathLike | None = None,
    sections: list[str] | tuple[str, ...] | None = None,
    images: bool = False,
    hires_max: int = 2000,
) -> ad.AnnData:
    """Spots under tissue of HER2ST sections, with raw counts and their position on the H&E image.

    Parameters
    ----------
    root
        Data root holding ``her2st/`` in the upstream layout (``data/ST-cnts``, ``data/ST-spotfiles``,
        ``data/ST-imgs``, ``data/ST-pat``, ``res/``); ``None`` reads ``$RNAPAINT_DATA``.
    sections
        Section names such as ``["C2", "C3"]``; default every section that has counts.
    images
        Attach each section's H&E in scanpy's convention, ``uns['spatial'][section]`` (a downscaled
        ``hires`` copy at most ``hires_max`` pixels wide, scale factors, and the full-resolution file
        as ``metadata['source_image_path']`` with its µm/px), so ``sc.pl.spatial(adata[adata.obs.section
        == 'C2'], library_id='C2')`` draws it and :func:`rnapaint.pp.spot_tiles` cuts patches from it.
        Sections without an image (C1, A1, E1 here) get none.
    hires_max
        Longest side of the downscaled copy.

    Returns
    -------
    AnnData ``(n_spots, n_genes)``: genes are the union over sections (zero where a section lacks
    one); raw counts in ``layers['counts']`` (sparse int32) and, until preprocessing, in ``.X``
    (float32). obs: ``section``, ``patient``, ``array_x``, ``array_y``, ``pixel_x``, ``pixel_y``, and
    where the study provides them ``label`` (pathologist region) and ``cluster`` (expression
    cluster). ``obsm['spatial']`` holds ``(pixel_x, pixel_y)`` in H&E pixels;
    ``obsm['cell_type_proportions']`` the stereoscope deconvolution (NaN where absent).
    ``uns['rnapaint']['dataset']['images']`` maps sections to their H&E file.
    """
    folder = data_dir(root, "her2st", SOURCE)
    cnt_dir = folder / "data" / "ST-cnts"
    available = sorted(p.name.split(".")[0] for p in cnt_dir.glob("*.tsv.gz"))
    sections = list(available if sections is None else sections)
    missing = sorted(set(sections) - set(available))
    if missing:
        raise ValueError(f"HER2ST sections {missing} have no counts under {cnt_dir}; available: {available}.")
    parts, image_files = [], {}
    for s in sections:
        a = read_expression_table(cnt_dir / f"{s}.tsv.gz", orientation="samples_x_genes")
        check_nonnegative(a.X, f"HER2ST counts of section {s}")
        sel = pd.read_csv(folder / "data" / "ST-spotfiles" / f"{s}_selection.tsv", sep="\t")
        sel = sel[sel["selected"] == 1]
        sel.index = _spot_ids(sel["x"], sel["y"])
        spots = a.obs_names.intersection(sel.index, sort=False)
        a = a[spots].copy()
        sel = sel.loc[spots]
        obs = pd.DataFrame(
            {
                "section": s,
                "patient": s[0],
                "array_x": sel["x"].to_numpy(int),
                "array_y": sel["y"].to_numpy(int),
                "pixel_x": sel["pixel_x"].to_numpy(float),
                "pixel_y": sel["pixel_y"].to_numpy(float),
            },
            index=spots,
        )
        for name, reader in (("label", _section_labels), ("cluster", _section_clusters)):
            col = reader(folder, s, spots)
            obs[name] = col.to_numpy(object) if col is not None else None
        a.obs = obs
        a.obs_names = [f"{s}_{i}" for i in spots]
        props = _section_proportions(folder, s, spots)
        if props is not None:
            props.index = a.obs_names
            a.obsm["cell_type_proportions"] = props
        img = _section_image(folder, s)
        if img is not None:
            image_files[s] = str(img)
        a.X = sp.csr_matrix(a.X.astype(np.int32))
        a.uns = {}
        parts.append(a)
    adata = ad.concat(parts, join="outer", merge="same", fill_value=0)
    # obsm DataFrames are dropped by an outer concat when a section lacks them: rebuild with NaN.
    props = [p.obsm.get("cell_type_proportions") for p in parts]
    if any(p is not None for p in props):
        cols = next(p for p in props if p is not None).columns
        adata.obsm["cell_type_proportions"] = pd.concat(
            [
                p if p is not None else pd.DataFrame(np.nan, index=q.obs_names, columns=cols)
                for p, q in zip(props, parts, strict=True)
            ]
        ).loc[adata.obs_names]
    for col in ("section", "patient", "label", "cluster"):
        adata.obs[col] = pd.Categorical(adata.obs[col].astype(object).where(adata.obs[col].notna(), None))
    adata.layers["counts"] = sp.csr_matrix(adata.X, dtype=np.int32)
    adata.X = adata.layers["counts"].astype(np.float32)
    adata.obsm["spatial"] = adata.obs[["pixel_x", "pixel_y"]].to_numpy(np.float64)
    adata.uns["rnapaint"] = {"dataset": {"name": "her2st", "sections": sections, "images": image_files}}
    if images:
        adata.uns["spatial"] = {
            s: _spatial_entry(Path(p), adata.obs[adata.obs["section"] == s], hires_max) for s, p in image_files.items()
        }
    return adata
