"""Expression tables (TSV/CSV, optionally gzipped) and GTEx GCT files → AnnData."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._validation import check_finite, check_unique

Orientation = Literal["genes_x_samples", "samples_x_genes"]
# What reading a file that is not a text table raises: binary bytes (UnicodeDecodeError), a .gz cut
# short (EOFError), a corrupt .gz (BadGzipFile is an OSError, zlib.error), unparsable text.
_UNREADABLE = (
    UnicodeDecodeError,
    EOFError,
    zlib.error,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    OSError,
)


def _is_gct(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".gct") or name.endswith(".gct.gz")


def _read_gct(path: Path) -> pd.DataFrame:
    # GCT 1.2: '#1.2', then 'n_rows n_cols', then a header with Name, Description, samples...
    with pd.io.common.get_handle(path, "r", compression="infer") as h:
        version = h.handle.readline().strip()
        if not version.startswith("#1."):
            raise ValueError(f"{path} is not a GCT file: its first line is {version[:40]!r}, not '#1.2'.")
        h.handle.readline()
        header = h.handle.readline().rstrip("\r\n").split("\t")
        if len(header) < 2:
            raise ValueError(f"{path} has no GCT header line (Name, Description, samples...).")
        # pandas would rename a repeated sample ('S1', 'S1.1'): check the header as written.
        check_unique([c for c in header[1:] if c.lower() != "description"], f"sample names in {path.name}")
        df = pd.read_csv(h.handle, sep="\t", header=None, names=header, index_col=0)
    df = df.drop(columns=[c for c in df.columns if str(c).lower() == "description"])
    return df


def _header_names(path: Path, sep: str, n_columns: int) -> pd.Series:
    """The column names of a table's header as written (pandas renames repeated ones 'A', 'A.1').

    A header one field shorter than the data rows (R's ``write.table``) names every data column; a
    full one starts with the index column's name.
    """
    raw = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    return raw if len(raw) == n_columns else raw.iloc[1:]


def read_expression_table(
    path: str | Path,
    orientation: Orientation = "genes_x_samples",
    sep: str | None = None,
    missing: Literal["raise", "keep"] = "raise",
) -> ad.AnnData:
    """Read an expression table into an AnnData (obs = samples, var = genes).

    Parameters
    ----------
    path
        A TSV or CSV file (optionally ``.gz``) with a header row and an index column, or a GTEx
        ``.gct``/``.gct.gz`` file (always genes × samples, its ``Description`` column is dropped).
    orientation
        ``"genes_x_samples"`` when rows are genes (TCGA, GTEx), ``"samples_x_genes"`` when rows are
        samples or spots (HER2ST counts).
    sep
        Column separator; inferred from the suffix when ``None`` (``.csv`` → ``,``, otherwise tab).
    missing
        ``"raise"`` (default) refuses NaN/inf; ``"keep"`` keeps NaN in ``.X`` for the caller to drop
        or impute (infinite values are always refused).

    Returns
    -------
    AnnData of shape ``(n_samples, n_genes)`` with float32 ``.X``, or int64 when every value is an
    integer (counts). ``uns['rnapaint']['source']`` records the file.

    Raises
    ------
    ValueError
        If the file is not a table, has no data rows or columns, holds non-numeric or non-finite
        values or values beyond float32's range, or names a gene or sample twice (in the header as
        written, also R's ``write.table`` header one field short, and in GCT headers).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No expression table at {path}.")
    if orientation not in ("genes_x_samples", "samples_x_genes"):
        raise ValueError(f"orientation must be 'genes_x_samples' or 'samples_x_genes', got {orientation!r}.")
    if _is_gct(path):
        try:
            df = _read_gct(path)
        except _UNREADABLE as e:
            raise ValueError(f"Could not parse {path} as a GCT file (binary, truncated or corrupted?): {e}") from e
        if orientation != "genes_x_samples":
            raise ValueError("GCT files are genes × samples; pass orientation='genes_x_samples'.")
    else:
        if sep is None:
            stem = path.name.lower().removesuffix(".gz")
            sep = "," if stem.endswith(".csv") else "\t"
        try:
            df = pd.read_csv(path, sep=sep, index_col=0)
            # pandas silently renames repeated header names ('A', 'A.1'): check the raw header.
            header = _header_names(path, sep, df.shape[1])
        except _UNREADABLE as e:
            raise ValueError(f"Could not parse {path} as a table (binary, truncated or corrupted?): {e}") from e
        what = "gene names" if orientation == "samples_x_genes" else "sample names"
        check_unique(header.astype(str), f"{what} in {path.name}")
    if df.shape[1] == 0:
        raise ValueError(f"{path} has no data columns: is the separator right (sep={sep!r})?")
    if df.shape[0] == 0:
        raise ValueError(f"{path} has a header but no data rows: there is no expression to read.")
    if orientation == "genes_x_samples":
        df = df.T
    df.index = df.index.astype(str)
    df.columns = df.columns.astype(str)
    check_unique(df.columns, f"gene names in {path.name}")
    check_unique(df.index, f"sample names in {path.name}")
    # pandas counts booleans as numeric; TRUE/FALSE columns are flags (a mutation call), not expression.
    nonnum = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    if nonnum:
        raise ValueError(
            f"{path}: {len(nonnum)} genes hold non-numeric or true/false values (e.g. {nonnum[0]!r}); is the "
            "orientation right, and is this an expression table?"
        )
    values = df.to_numpy()
    is_int = np.issubdtype(values.dtype, np.integer)
    v = values.astype(np.float64, copy=False)
    if missing == "keep":
        v = np.where(np.isnan(v), 0.0, v)
    check_finite(v, f"{path.name}")
    if not is_int:
        # Checked before the cast too, so that a NaN/inf in the file is reported as such; a finite
        # value beyond float32's range would only turn infinite in the cast.
        big = np.abs(v) > np.finfo(np.float32).max
        if big.any():
            raise ValueError(
                f"{path.name} holds {int(big.sum())} values beyond float32's range (±3.4e38, e.g. "
                f"{v[big].flat[0]:g}); rnapaint keeps expression as float32: rescale them first."
            )
    X = values.astype(np.int64 if is_int else np.float32)
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=df.index), var=pd.DataFrame(index=df.columns))
    adata.uns["rnapaint"] = {"source": {"path": str(path), "orientation": orientation}}
    return adata
