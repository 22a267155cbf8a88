"""Shared fixtures: the real data root, and small AnnData objects."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("RNAPAINT_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data (../shared/data or $RNAPAINT_DATA); missing data fails under CI, skips elsewhere."""
    root = _data_root()
    if root is None:
        msg = "real data not found: set RNAPAINT_DATA or put the shared data at ../shared/data"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture
def small_adata() -> ad.AnnData:
    """60 samples × 40 genes of z-scored-like values with two groups and a split."""
    rng = np.random.default_rng(0)
    n, g = 60, 40
    groups = np.repeat(["a", "b"], n // 2)
    x = rng.standard_normal((n, g)).astype(np.float32)
    x[groups == "b", :10] += 2.0
    obs = pd.DataFrame({"group": pd.Categorical(groups)}, index=[f"s{i}" for i in range(n)])
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(g)]))
    a.obs["split"] = pd.Categorical(
        np.tile(["train"] * 6 + ["val"] * 2 + ["test"] * 2, n // 10), categories=["train", "val", "test"]
    )
    return a


@pytest.fixture
def counts_adata() -> ad.AnnData:
    rng = np.random.default_rng(1)
    x = rng.poisson(3.0, size=(30, 25)).astype(np.float32)
    return ad.AnnData(
        X=x, var=pd.DataFrame(index=[f"g{i}" for i in range(25)]), obs=pd.DataFrame(index=[f"c{i}" for i in range(30)])
    )
