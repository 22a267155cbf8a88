"""The ``rnapaint`` command line: tile, train, generate, evaluate on files."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rnapaint as rp
from rnapaint.cli import app

runner = CliRunner()


def _run(*args: str, code: int = 0):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == code, f"exit {res.exit_code}: {res.output}\n{res.exception!r}"
    return res


def test_tile_command_writes_a_resumable_store_and_lists_failures(data_root, tmp_path):
    table = tmp_path / "units.csv"
    pd.DataFrame(
        {
            "unit": ["cmu", "gone"],
            "slide": [str(data_root / "wsi/CMU-1-Small-Region.svs"), str(tmp_path / "missing.svs")],
        }
    ).to_csv(table, index=False)
    store = tmp_path / "tiles.zarr"
    res = _run("tile", table, "--store", store, "--max-tiles", "10")
    s = rp.data.TileStore.open(store)
    assert len(s) == 10 and s.units == ["cmu"] and s.failures["slide"].str.endswith("missing.svs").all()
    assert "10 tiles from 1 slides" in res.output and "failed: " in res.output and "missing.svs" in res.output
    _run("tile", table, "--store", store, "--max-tiles", "10")  # a rerun skips the finished slide
    assert len(rp.data.TileStore.open(store)) == 10
    res = _run("tile", table, "--store", store, "--slide-key", "path", code=2)
    assert "no 'path' column" in res.output


@pytest.fixture(scope="module")
def toy_h5ad(tmp_path_factory):
    a = rp.datasets.toy(n=96, tile_size=32, tiles_per_obs=2, seed=0)
    rp.pp.log1p(a)
    rp.pp.split(a, stratify="group", fractions=(0.6, 0.2, 0.2), seed=0)
    rp.pp.zscore(a)
    path = tmp_path_factory.mktemp("cli") / "toy.h5ad"
    a.write_h5ad(path)
    return path


def test_train_generate_evaluate_commands(toy_h5ad, tmp_path):
    vae, gan = tmp_path / "vae", tmp_path / "gan"
    vae.mkdir()  # an empty folder is written into, without --overwrite
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "vae",
        "--out",
        vae,
        "--max-epochs",
        "3",
        "--model-arg",
        "hidden=[32,16]",
        "--model-arg",
        "latent_dim=4",
    )
    assert "Saved BetaVAE" in res.output and (vae / "model.safetensors").is_file()
    _run(
        "train",
        toy_h5ad,
        "--method",
        "rnagan",
        "--tiles",
        "obsm:tiles",
        "--vae",
        vae,
        "--out",
        gan,
        "--max-steps",
        "4",
        "--batch-size",
        "16",
        "--model-arg",
        "width=8",
        "--train-arg",
        "num_workers=0",
        "--train-arg",
        "n_critic=2",
    )
    model = rp.models.load_model(gan)
    assert model.is_trained and model.train_info["steps"] == 4 and model.vae is not None
    # a cascaded diffusion model trains each stage: the message gives both
    tiny = json.dumps(
        {"channels": [16, 32], "attention": [False, True], "layers_per_block": 1, "n_tokens": 2}
        | {"token_dim": 16, "hidden": 16, "head_dim": 8}
    )
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "cdm",
        "--tiles",
        "obsm:tiles",
        "--vae",
        vae,
        "--out",
        tmp_path / "cdm",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--model-arg",
        f"base={tiny}",
        "--model-arg",
        f"sr={tiny}",
        "--model-arg",
        "base_size=16",
        "--train-arg",
        "num_workers=0",
    )
    assert "base stage 2 steps in" in res.output and "sr stage 2 steps in" in res.output, res.output

    # generate: into an .h5ad and into a TileStore, the same tiles as the Python API paints
    _run("generate", toy_h5ad, "--model", gan, "--out", tmp_path / "gen.h5ad", "--n-per-obs", "2", "--seed", "3")
    gen = ad.read_h5ad(tmp_path / "gen.h5ad")
    expected = model.generate(ad.read_h5ad(toy_h5ad), n_per_obs=2, seed=3)
    np.testing.assert_array_equal(gen.obsm["X_tiles"], expected)
    _run("generate", toy_h5ad, "--model", gan, "--out", tmp_path / "gen.zarr", "--n-per-obs", "2", "--seed", "3")
    store = rp.data.TileStore.open(tmp_path / "gen.zarr")
    np.testing.assert_array_equal(store[np.arange(len(store))], expected.reshape(-1, 32, 32, 3))
    res = _run("generate", toy_h5ad, "--model", gan, "--out", tmp_path / "gen.zarr", code=2)
    assert "--overwrite" in res.output
    res = _run("generate", toy_h5ad, "--model", gan, "--out", tmp_path / "x.h5ad", "--sampler", "ddim", code=2)
    assert "diffusion setting" in res.output and not (tmp_path / "x.h5ad").exists()

    # evaluate: a report with the baselines, as a CSV and a figure (the condition from the generator's β-VAE)
    assert "X_vae" not in gen.obsm
    gen.obsm["X_other"] = gen.obsm["X_tiles"][np.random.default_rng(0).permutation(gen.n_obs)]  # others' tiles
    gen.write_h5ad(tmp_path / "gen.h5ad")
    _run(
        "evaluate",
        tmp_path / "gen.h5ad",
        "--generated",
        "X_tiles",
        "--generated",
        "X_other",
        "--out",
        tmp_path / "report.csv",
        "--figure",
        tmp_path / "eval.png",
        "--encoder-epochs",
        "1",
        "--n-boot",
        "5",
        "--label-key",
        "group",
        "--vae",
        gan / "vae",
        "--contrast",
        "X_tiles, X_other",
    )
    report = pd.read_csv(tmp_path / "report.csv")
    assert {"X_tiles", "real (held out)", "nearest neighbour"} <= set(report["method"])
    assert {"KID (encoder)", "condition fidelity"} <= set(report["metric"])
    assert (tmp_path / "eval.png").stat().st_size > 0
    v = report.set_index(["method", "metric"])["value"]
    gap = v["X_tiles", "condition fidelity"] - v["X_other", "condition fidelity"]
    assert v["X_tiles − X_other", "condition fidelity, A − B (paired)"] == pytest.approx(gap)
    for bad, why in (("X_tiles", "A,B"), ("X_tiles,X_nope", "not among --generated")):
        res = _run(
            "evaluate",
            tmp_path / "gen.h5ad",
            "--generated",
            "X_tiles",
            "--out",
            tmp_path / "r2.csv",
            "--contrast",
            bad,
            code=2,
        )
        assert why in res.output and not (tmp_path / "r2.csv").exists()
    # nuclei features: nothing trained, its own metric names; an unknown space is refused before anything is written
    common = ["evaluate", tmp_path / "gen.h5ad", "--generated", "X_tiles", "--label-key", "group", "--vae", gan / "vae"]
    _run(*common, "--out", tmp_path / "r3.csv", "--features", "nuclei", "--mpp", "2", "--n-boot", "5")
    assert "condition fidelity (nuclei features)" in set(pd.read_csv(tmp_path / "r3.csv")["metric"])
    res = _run(*common, "--out", tmp_path / "r4.csv", "--features", "inception", code=2)
    assert "'encoder' or 'nuclei'" in res.output and not (tmp_path / "r4.csv").exists()
    # composition agreement against cell shares stored as an obsm DataFrame in the .h5ad
    shares = gen.obs[["density"]].rename(columns={"density": "Epithelial"}).astype(float)
    gen.obsm["cells"] = shares.assign(Stroma=np.random.default_rng(0).uniform(0, 0.1, gen.n_obs))
    gen.write_h5ad(tmp_path / "gen_cells.h5ad")
    comp = ["evaluate", tmp_path / "gen_cells.h5ad", "--generated", "X_tiles", "--vae", gan / "vae"]
    comp += ["--features", "nuclei", "--mpp", "2", "--n-boot", "5", "--proportions-key", "cells"]
    _run(*comp, "--out", tmp_path / "r5.csv", "--composition", "density=Epithelial, Stroma")
    rows = pd.read_csv(tmp_path / "r5.csv").set_index(["method", "metric"])
    assert rows.loc[("X_tiles", "ρ(density, Epithelial + Stroma)"), "n_units"] > 10
    res = _run(*comp, "--out", tmp_path / "r6.csv", "--composition", "density", code=2)
    assert "FEATURE=TYPE" in res.output and not (tmp_path / "r6.csv").exists()
    res = _run(*comp, "--out", tmp_path / "r6.csv", "--composition", "density=Immune", code=2)
    assert "no column ['Immune']" in res.output and not (tmp_path / "r6.csv").exists()


def test_commands_refuse_bad_input_with_a_clear_message(toy_h5ad, tmp_path):
    res = _run("train", tmp_path / "nope.h5ad", "--method", "vae", "--out", tmp_path / "m", code=2)
    assert "does not exist" in res.output
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "rnagan",
        "--tiles",
        "obsm:tiles",
        "--out",
        tmp_path / "m",
        "--max-steps",
        "1",
        code=2,
    )
    assert "--vae" in res.output and not (tmp_path / "m").exists()
    res = _run("train", toy_h5ad, "--method", "gan", "--tiles", "obsm:nothing", "--out", tmp_path / "m", code=2)
    assert "no obsm['nothing']" in res.output
    res = _run("train", toy_h5ad, "--method", "gan", "--tiles", str(tmp_path), "--out", tmp_path / "m", code=2)
    assert "not a rnapaint TileStore" in res.output
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "gan",
        "--tiles",
        "obsm:tiles",
        "--out",
        tmp_path / "m",
        "--model-arg",
        "width",
        code=2,
    )
    assert "KEY=VALUE" in res.output
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "gan",
        "--tiles",
        "obsm:tiles",
        "--out",
        tmp_path / "m",
        "--train-arg",
        "seed=1",
        code=2,
    )
    assert "set seed with --seed" in res.output
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "gan",
        "--tiles",
        "obsm:tiles",
        "--out",
        tmp_path / "m",
        "--max-steps",
        "1",
        "--model-arg",
        "widht=8",
        code=2,
    )
    assert "TypeError" in res.output and "widht" in res.output and "Traceback" not in res.output
    res = _run("train", toy_h5ad, "--method", "vae", "--out", tmp_path / "m", "--minutes", "1", code=2)
    assert "--max-epochs" in res.output
    table = tmp_path / "units.csv"
    table.write_text("unit,slide\na,x.svs\n")
    res = _run("train", table, "--method", "vae", "--out", tmp_path / "m", code=2)
    assert "expected an .h5ad file" in res.output
    res = _run("generate", toy_h5ad, "--model", tmp_path / "no_model", "--out", tmp_path / "o.h5ad", code=2)
    assert "not a rnapaint model directory" in res.output
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not hdf5")
    res = _run("generate", bad, "--model", tmp_path, "--out", tmp_path / "o.h5ad", code=2)
    assert "cannot read" in res.output
    # options that would be ignored are refused, and nothing is computed or written
    res = _run(
        "generate", toy_h5ad, "--model", tmp_path / "no_model", "--out", tmp_path / "o.zarr", "--key", "k", code=2
    )
    assert "drop --key" in res.output
    res = _run("train", toy_h5ad, "--method", "vae", "--vae", tmp_path, "--out", tmp_path / "m", code=2)
    assert "drop --vae" in res.output
    res = _run(
        "train",
        toy_h5ad,
        "--method",
        "gan",
        "--tiles",
        "obsm:tiles",
        "--out",
        tmp_path / "m",
        "--max-epochs",
        "3",
        code=2,
    )
    assert "--max-epochs is for --method vae" in res.output and not (tmp_path / "m").exists()
    common = ["evaluate", toy_h5ad, "--generated", "tiles"]
    res = _run(*common, "--out", tmp_path / "r.csv", "--features", "nuclei", "--encoder-epochs", "2", code=2)
    assert "--encoder-epochs" in res.output and not (tmp_path / "r.csv").exists()
    res = _run(*common, "--out", tmp_path / "r.csv", "--figure", tmp_path / "no" / "f.png", code=2)
    assert "does not exist" in res.output and not (tmp_path / "r.csv").exists()


def test_virtual_he_command_writes_spatialdata_or_h5ad(toy_h5ad, tmp_path):
    import spatialdata as sd

    gan = tmp_path / "gan"
    _run(
        "train",
        toy_h5ad,
        "--method",
        "gan",
        "--tiles",
        "obsm:tiles",
        "--out",
        gan,
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--model-arg",
        "width=8",
        "--train-arg",
        "num_workers=0",
    )
    a = ad.read_h5ad(toy_h5ad)[:36].copy()
    r, c = np.divmod(np.arange(a.n_obs), 6)
    a.obsm["spatial"] = np.c_[100 + 50.0 * c, 100 + 50.0 * r]  # a legacy ST grid, 200 µm apart
    a.obs["section"] = "S1"
    spots = tmp_path / "spots.h5ad"
    a.write_h5ad(spots)
    out = tmp_path / "virtual.zarr"
    res = _run("virtual-he", spots, "--model", gan, "--out", out, "--n-draws", "2")
    assert "virtual H&E of S1 (st grid)" in res.output
    back = sd.read_zarr(out)
    assert {"S1_virtual_he", "S1_virtual_he_spread"} <= set(back.images)
    res = _run("virtual-he", spots, "--model", gan, "--out", out, code=2)  # exists: refused
    assert "--overwrite" in res.output
    h5 = tmp_path / "virtual.h5ad"
    _run("virtual-he", out, "--model", gan, "--out", h5)  # a SpatialData input too
    img = ad.read_h5ad(h5).uns["spatial"]["S1"]["images"]["virtual_he"]
    assert img.ndim == 3 and img.shape[2] == 3
    res = _run("virtual-he", spots, "--model", toy_h5ad, "--out", tmp_path / "x.h5ad", code=2)
    assert "error" in res.output
    assert not (tmp_path / "x.h5ad").exists()
