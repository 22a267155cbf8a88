"""The real data sets, read from ../shared/data (or $RNAPAINT_DATA)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rnapaint as rp
from rnapaint.datasets._tcga import parse_tcga_barcode


def test_root_missing_says_where(monkeypatch, tmp_path):
    monkeypatch.delenv("RNAPAINT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="RNAPAINT_DATA"):
        rp.datasets.tcga_tumor_normal()
    with pytest.raises(FileNotFoundError, match="MetaGSCA"):
        rp.datasets.tcga_tumor_normal(tmp_path)


@pytest.mark.parametrize(
    ("barcode", "expected"),
    [
        ("TCGA-A7-A0CE-01A-11R-A00Z-07", ("TCGA-A7-A0CE", "tumor")),
        ("TCGA-A7-A0CE-11A-21R-A089-07", ("TCGA-A7-A0CE", "normal")),
        ("TCGA-CH-5767-11B-01R-1789-07", ("TCGA-CH-5767", "normal")),
    ],
)
def test_barcodes(barcode, expected):
    assert parse_tcga_barcode(barcode) == expected


def test_bad_barcode():
    with pytest.raises(ValueError, match="not a TCGA barcode"):
        parse_tcga_barcode("sample_1")


def test_tcga(data_root):
    a = rp.datasets.tcga_tumor_normal(data_root, cohorts=["BRCA", "COAD"])
    assert set(a.obs["cohort"]) == {"BRCA", "COAD"}
    assert set(a.obs["sample_type"]) == {"tumor", "normal"}
    assert np.isfinite(a.X).all() and a.X.dtype == np.float32
    # Barcodes end up in the right columns: the patient is the barcode's first three fields.
    first = a.obs_names[0]
    assert a.obs["patient"].iloc[0] == "-".join(first.split("-")[:3])
    # COAD has missing values in some genes: those genes are dropped and recorded.
    assert a.uns["rnapaint"]["dataset"]["genes_dropped_for_missing_values"]["COAD"] > 0
    with pytest.raises(ValueError, match="Unknown TCGA cohorts"):
        rp.datasets.tcga_tumor_normal(data_root, cohorts=["XYZ"])


def test_her2st(data_root):
    a = rp.datasets.her2st(data_root, sections=["C2", "C5"])
    assert a.obs["section"].value_counts().to_dict() == {"C2": 187, "C5": 181}
    assert (a.obs["patient"] == "C").all()
    counts = a.layers["counts"]
    assert counts.dtype == np.int32 and counts.min() >= 0
    np.testing.assert_array_equal(a.obsm["spatial"], a.obs[["pixel_x", "pixel_y"]].to_numpy())
    # Spot 25x13 of C2 sits at pixel (6930.58, 3510.24) in the spot file.
    np.testing.assert_allclose(a[a.obs_names == "C2_25x13"].obsm["spatial"][0], [6930.58, 3510.24])
    props = a.obsm["cell_type_proportions"]
    assert isinstance(props, pd.DataFrame) and "Epithelial" in props.columns
    np.testing.assert_allclose(props.sum(1), 1.0, atol=1e-3)
    assert a.obs["cluster"].notna().mean() > 0.98  # the study leaves a few spots unclustered
    assert set(a.uns["rnapaint"]["dataset"]["images"]) == {"C2", "C5"}


def test_her2st_labels_and_unknown_section(data_root):
    a = rp.datasets.her2st(data_root, sections=["A1"])
    assert a.obs["label"].notna().mean() > 0.95
    assert "invasive cancer" in set(a.obs["label"].dropna())
    with pytest.raises(ValueError, match="no counts"):
        rp.datasets.her2st(data_root, sections=["Z9"])
