"""Expression-table readers and model files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import rnapaint as rp
from rnapaint.io.model_files import load_model_files, save_model_files


def _write(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_genes_x_samples_tsv_gz(tmp_path):
    p = _write(tmp_path / "t.tsv.gz", "gene\ts1\ts2\ts3\nA\t1.5\t2\t3\nB\t4\t5\t6.25\n", gz=True)
    a = rp.io.read_expression_table(p)
    assert a.shape == (3, 2)
    assert list(a.obs_names) == ["s1", "s2", "s3"] and list(a.var_names) == ["A", "B"]
    np.testing.assert_allclose(a.X[:, 1], [4, 5, 6.25])
    assert a.X.dtype == np.float32


def test_samples_x_genes_csv_counts(tmp_path):
    p = _write(tmp_path / "t.csv", ",A,B\nspot1,0,3\nspot2,7,1\n")
    a = rp.io.read_expression_table(p, orientation="samples_x_genes")
    assert a.shape == (2, 2) and a.X.dtype == np.int64
    assert a.X[1, 0] == 7


def test_gct(tmp_path):
    p = _write(tmp_path / "x.gct", "#1.2\n2\t2\nName\tDescription\tS1\tS2\nENSG1\tA\t1\t2\nENSG2\tB\t3\t4\n")
    a = rp.io.read_expression_table(p)
    assert list(a.var_names) == ["ENSG1", "ENSG2"] and list(a.obs_names) == ["S1", "S2"]
    np.testing.assert_array_equal(np.asarray(a.X), [[1, 3], [2, 4]])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gene\ts1\ts2\nA\t1\tNaN\nB\t2\t3\n", "NaN"),
        ("gene\ts1\ts2\nA\t1\tinf\nB\t2\t3\n", "infinite"),
        ("gene\ts1\ts2\nA\t1\t2\nA\t2\t3\n", "duplicated gene names"),
        ("gene\ts1\ts2\nA\t1\tx\nB\t2\t3\n", "non-numeric"),
        ("gene\ts1\ts2\nA\tTRUE\tFALSE\nB\tFALSE\tTRUE\n", "true/false"),
    ],
)
def test_bad_tables_raise(tmp_path, text, match):
    p = _write(tmp_path / "bad.tsv", text)
    with pytest.raises(ValueError, match=match):
        rp.io.read_expression_table(p)


def test_missing_keep_keeps_nan(tmp_path):
    p = _write(tmp_path / "t.tsv", "gene\ts1\ts2\nA\t1\tNaN\nB\t2\t3\n")
    a = rp.io.read_expression_table(p, missing="keep")
    assert np.isnan(a.X).sum() == 1


def test_not_a_gct_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not a GCT"):
        rp.io.read_expression_table(_write(tmp_path / "x.gct", "hello\n1\t2\n"))
    with pytest.raises(FileNotFoundError):
        rp.io.read_expression_table(tmp_path / "nope.tsv")


def test_model_files_roundtrip_and_corruption(tmp_path):
    w = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([3], dtype=np.int64)}
    save_model_files(tmp_path / "m", w, {"hello": [1, 2]})
    tensors, cfg = load_model_files(tmp_path / "m")
    np.testing.assert_array_equal(tensors["a"], w["a"])
    assert tensors["n"].dtype == np.int64 and cfg["hello"] == [1, 2]
    with pytest.raises(FileExistsError):
        save_model_files(tmp_path / "m", w, {})
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])  # truncated copy
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_model_files(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model_files(tmp_path / "m")
    with pytest.raises(ValueError, match="is missing"):
        load_model_files(tmp_path / "empty_dir_that_is_not_there")


def test_duplicated_header_is_not_silently_renamed(tmp_path):
    p = _write(tmp_path / "spots.tsv", "\tA\tA\tB\ns1\t1\t2\t3\n")
    with pytest.raises(ValueError, match="duplicated gene names"):
        rp.io.read_expression_table(p, orientation="samples_x_genes")


def test_interrupted_swap_is_recovered(tmp_path):
    w = {"a": np.ones(3, np.float32)}
    save_model_files(tmp_path / "m", w, {"v": 1})
    save_model_files(tmp_path / "m", w, {"v": 2}, overwrite=True)
    # A kill between the two renames of the swap leaves only the previous version at .m.old.
    (tmp_path / "m").rename(tmp_path / ".m.old")
    _, cfg = load_model_files(tmp_path / "m")
    assert cfg["v"] == 2 and (tmp_path / "m").is_dir()
    (tmp_path / ".m.tmp_dead").mkdir()  # a killed writer's temp folder
    save_model_files(tmp_path / "m", w, {"v": 3}, overwrite=True)
    assert not (tmp_path / ".m.tmp_dead").exists()


def test_r_write_table_and_gct_headers_are_checked_for_duplicates(tmp_path):
    # R's write.table writes the header one field short (no name over the row names).
    r_style = _write(tmp_path / "r.tsv", "S1\tS1\tS2\nG1\t1\t2\t3\nG2\t4\t5\t6\n")
    with pytest.raises(ValueError, match=r"duplicated sample names in r.tsv \(e.g. S1\)"):
        rp.io.read_expression_table(r_style)
    ok = rp.io.read_expression_table(_write(tmp_path / "ok.tsv", "S1\tS2\tS3\nG1\t1\t2\t3\nG2\t4\t5\t6\n"))
    assert list(ok.obs_names) == ["S1", "S2", "S3"]
    gct = _write(tmp_path / "d.gct", "#1.2\n2\t2\nName\tDescription\tS1\tS1\nG1\tx\t1\t2\nG2\ty\t3\t4\n")
    with pytest.raises(ValueError, match=r"duplicated sample names in d.gct \(e.g. S1\)"):
        rp.io.read_expression_table(gct)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gene\ts1\ts2\n", "no data rows"),
        ("gene\ts1\nA\t1e40\n", "beyond float32's range"),
        ("gene\ts1\ts2\nA\t1\t-5e38\nB\t2\t3\n", "beyond float32's range"),
    ],
)
def test_empty_tables_and_values_beyond_float32_are_refused(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        rp.io.read_expression_table(_write(tmp_path / "t.tsv", text))


def test_overwrite_false_after_an_interrupted_swap_keeps_the_old_model(tmp_path):
    save_model_files(tmp_path / "m", {"w": np.ones(2)}, {"v": "old"})
    (tmp_path / "m").rename(tmp_path / ".m.old")  # a kill between the two renames of a replacement
    with pytest.raises(FileExistsError):
        save_model_files(tmp_path / "m", {"w": np.zeros(2)}, {"v": "new"})
    assert load_model_files(tmp_path / "m")[1]["v"] == "old"


def test_config_that_is_not_a_json_object_is_refused(tmp_path):
    from rnapaint.models import load_model

    save_model_files(tmp_path / "m", {"w": np.ones(2)}, {"v": 1})
    (tmp_path / "m" / "config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list, not an object"):
        load_model_files(tmp_path / "m")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list, not an object"):
        load_model(tmp_path / "m")


def test_load_model_finishes_an_interrupted_swap(tmp_path):
    from rnapaint.models import load_model

    save_model_files(tmp_path / "m", {"w": np.ones(2)}, {"class": "SomethingElse"})
    (tmp_path / "m").rename(tmp_path / ".m.old")
    with pytest.raises(ValueError, match="holds a 'SomethingElse' model"):  # not "config.json is missing"
        load_model(tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file() and not (tmp_path / ".m.old").exists()


def test_overwrite_replaces_only_a_model_directory(tmp_path):
    w = {"a": np.ones(3, np.float32)}
    results = tmp_path / "results"
    results.mkdir()
    (results / "precious.csv").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"not a rnapaint model directory.*even with overwrite=True"):
        save_model_files(results, w, {}, overwrite=True)
    assert (results / "precious.csv").read_text() == "keep me"
    rp.io.TileStore.create(tmp_path / "tiles.zarr", 8).close()
    with pytest.raises(FileExistsError, match="not a rnapaint model directory"):
        save_model_files(tmp_path / "tiles.zarr", w, {}, overwrite=True)
    assert len(rp.io.TileStore.open(tmp_path / "tiles.zarr")) == 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a rnapaint model directory"):
        save_model_files(tmp_path / "file", w, {}, overwrite=True)
    (tmp_path / "empty").mkdir()
    save_model_files(tmp_path / "empty", w, {"v": 1})  # an empty folder is written into
    assert load_model_files(tmp_path / "empty")[1]["v"] == 1
    # A model with a nested model (a generator's VAE) is replaced; one a user added files to is not.
    children = {"vae": lambda p: save_model_files(p, w, {"child": True})}
    save_model_files(tmp_path / "m", w, {"v": 1}, children=children)
    save_model_files(tmp_path / "m", w, {"v": 2}, overwrite=True, children=children)
    assert load_model_files(tmp_path / "m")[1]["v"] == 2 and load_model_files(tmp_path / "m" / "vae")[1]["child"]
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"also holds 'notes\.txt'"):
        save_model_files(tmp_path / "m", w, {"v": 3}, overwrite=True)
    assert (tmp_path / "m" / "notes.txt").is_file()


def test_binary_or_newer_model_config_is_refused_naming_the_file(tmp_path):
    from rnapaint.io.model_files import read_config

    save_model_files(tmp_path / "m", {"w": np.ones(2)}, {"v": 1})
    cfg = tmp_path / "m" / "config.json"
    text = cfg.read_text()
    cfg.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match=r"m/config.json is not UTF-8"):
        load_model_files(tmp_path / "m")
    cfg.write_text(text.replace('"format_version": 1', '"format_version": 7'))
    msg = r"config.json was written by a newer rnapaint \(format 7 > 1\); upgrade rnapaint"
    with pytest.raises(ValueError, match=msg):
        load_model_files(tmp_path / "m")
    with pytest.raises(ValueError, match=msg):
        read_config(cfg)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.tsv.gz", gzip.compress("".join(f"G{i}\t{i}\t2\n" for i in range(9000)).encode())[:9000]),  # cut short
        ("b.gct", b"#1.2\n1\t2\n\xff\xfe\x00\x81 binary"),
        ("c.gct.gz", gzip.compress(b"#1.2\n1\t2\nName\tDescription\tS1\tS2\n" + b"G\tx\t1\t2\n" * 500)[:80]),
    ],
    ids=["truncated-gz", "binary-gct", "truncated-gct-gz"],
)
def test_truncated_gzip_and_binary_files_name_the_file(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=rf"Could not parse .*{name}"):
        rp.io.read_expression_table(tmp_path / name)
