"""TCGA matched tumour / adjacent-normal RNA-seq (9 cohorts, log2 values)."""

from __future__ import annotations

import os
import re

import anndata as ad
import numpy as np
import pandas as pd

from ..io.expression import read_expression_table
from ._root import data_dir

SOURCE = "TCGA via the MetaGSCA project (tumour -01A and adjacent normal -11A samples, log2 values)"
COHORTS = ("BRCA", "COAD", "HNSC", "KIRC", "KIRP", "LIHC", "LUAD", "LUSC", "PRAD")
# Organ of each cohort: adjacent-normal samples of LUAD and LUSC (or KIRC and KIRP) are the same tissue.
TISSUE = {
    "BRCA": "breast",
    "COAD": "colon",
    "HNSC": "head_and_neck",
    "KIRC": "kidney",
    "KIRP": "kidney",
    "LIHC": "liver",
    "LUAD": "lung",
    "LUSC": "lung",
    "PRAD": "prostate",
}
_BARCODE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})-(\d{2})([A-Z])")


def parse_tcga_barcode(barcode: str) -> tuple[str, str]:
    """Return ``(patient, sample_type)`` of a TCGA aliquot barcode.

    Sample codes 01–09 are tumours, 10–19 normals (TCGA code tables); anything else raises.
    """
    m = _BARCODE.match(barcode)
    if m is None:
        raise ValueError(f"{barcode!r} is not a TCGA barcode (TCGA-XX-XXXX-NNA...).")
    code = int(m.group(2))
    if 1 <= code <= 9:
        kind = "tumor"
    elif 10 <= code <= 19:
        kind = "normal"
    else:
        raise ValueError(f"{barcode!r}: sample code {code:02d} is neither tumour (01–09) nor normal (10–19).")
    return m.group(1), kind


def tcga_tumor_normal(
    root: str | os.PathLike | None = None,
    cohorts: list[str] | tuple[str, ...] | None = None,
) -> ad.AnnData:
    """TCGA tumour and matched normal samples of several cohorts, genes shared by all.

    Parameters
    ----------
    root
        Data root holding ``tcga_tumor_normal/{COHORT}.tsv.gz``; ``None`` reads ``$RNAPAINT_DATA``.
    cohorts
        Subset of ``BRCA, COAD, HNSC, KIRC, KIRP, LIHC, LUAD, LUSC, PRAD`` (default all).

    Returns
    -------
    AnnData ``(n_samples, n_shared_genes)`` with log2 expression in ``.X`` (float32) and obs
    ``cohort``, ``tissue`` (organ), ``sample_type`` (``tumor``/``normal``), ``patient``. The values
    are already log-transformed: normalise with :func:`rnapaint.pp.zscore`, not ``log1p``. Genes with missing
    values in any sample of a chosen cohort are dropped (recorded in ``uns['rnapaint']['dataset']``).
    """
    folder = data_dir(root, "tcga_tumor_normal", SOURCE)
    cohorts = list(COHORTS if cohorts is None else cohorts)
    unknown = sorted(set(cohorts) - set(COHORTS))
    if unknown:
        raise ValueError(f"Unknown TCGA cohorts {unknown}; choose from {list(COHORTS)}.")
    parts, dropped = [], {}
    for c in cohorts:
        a = read_expression_table(folder / f"{c}.tsv.gz", orientation="genes_x_samples", missing="keep")
        a.X = a.X.astype(np.float32)
        # A few cohorts (COAD) miss values for some genes in some samples: drop those genes.
        incomplete = np.isnan(a.X).any(axis=0)
        if incomplete.any():
            dropped[c] = int(incomplete.sum())
            a = a[:, ~incomplete].copy()
        parsed = [parse_tcga_barcode(b) for b in a.obs_names]
        a.obs["cohort"] = c
        a.obs["tissue"] = TISSUE[c]
        a.obs["patient"] = [p for p, _ in parsed]
        a.obs["sample_type"] = [k for _, k in parsed]
        a.uns = {}
        parts.append(a)
    adata = ad.concat(parts, join="inner", merge="same")
    adata.obs["cohort"] = pd.Categorical(adata.obs["cohort"], categories=cohorts)
    adata.obs["tissue"] = pd.Categorical(adata.obs["tissue"])
    adata.obs["sample_type"] = pd.Categorical(adata.obs["sample_type"], categories=["normal", "tumor"])
    adata.uns["rnapaint"] = {
        "dataset": {
            "name": "tcga_tumor_normal",
            "cohorts": cohorts,
            "values": "log2",
            "genes_dropped_for_missing_values": dropped,
        }
    }
    return adata
