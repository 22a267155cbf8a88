"""``rnapaint tile | train | generate | evaluate``: the pipeline on files, for scripts and clusters.

Each command reads what the Python API reads (an ``.h5ad`` of expression units, a TileStore, a model
directory) and writes its result atomically: a run that fails leaves no half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

GENERATORS = ("rnagan", "gan", "cdm")


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the library's errors about the input into one line on stderr and exit code 2."""
    try:
        yield
    except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
        _fail(f"{type(e).__name__}: {e}")


def _read_units(path: Path, tables: bool = False):
    """An ``.h5ad``, or (with ``tables``) a CSV/TSV table whose first column names the units."""
    import anndata as ad
    import pandas as pd

    if not path.is_file():
        _fail(f"{path} does not exist.")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".h5ad":
            return ad.read_h5ad(path)
        if tables and any(s in suffixes for s in (".csv", ".tsv", ".txt")):
            sep = "\t" if ".tsv" in suffixes or ".txt" in suffixes else ","
            obs = pd.read_csv(path, sep=sep, index_col=0)
            obs.index = obs.index.astype(str)
            return ad.AnnData(obs=obs)
    except Exception as e:  # h5py / pandas errors say little about which file
        _fail(f"cannot read {path}: {e}")
    _fail(f"{path}: expected an .h5ad file{' or a .csv/.tsv table of units' if tables else ''}.")


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` to a hidden file beside ``path`` (same suffix), then move it into place."""
    _write_all_atomic([(path, write)])


def _write_all_atomic(outputs: list[tuple[Path, Any]]) -> None:
    """Each ``write(tmp)`` to a hidden file beside its path; only when all succeeded, move them into place."""
    tmps = [(path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}"), path) for path, _ in outputs]
    try:
        for (tmp, _), (_, write) in zip(tmps, outputs, strict=True):
            write(tmp)
        for tmp, path in tmps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)


def _check_output_folder(path: Path, option: str) -> None:
    """Fail before any work when an output's folder does not exist."""
    if not path.parent.is_dir():
        _fail(f"{option} {path}: the folder {path.parent} does not exist.")


def _key_values(pairs: list[str] | None, what: str, reserved: dict[str, str] | None = None) -> dict[str, Any]:
    """``["width=16", "upsample=\"resize\""]`` → ``{"width": 16, "upsample": "resize"}`` (values as JSON).

    ``reserved`` maps keys that have their own option to that option's name.
    """
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            _fail(f"{what} takes KEY=VALUE, got {p!r}.")
        if reserved and key in reserved:
            _fail(f"set {key} with {reserved[key]}, not {what}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare word: a string
    return out


def _tiles(adata, spec: str):
    """``obsm:KEY`` → ``adata.obsm[KEY]``; anything else is a TileStore path."""
    if spec.startswith("obsm:"):
        key = spec[5:]
        if key not in adata.obsm:
            _fail(f"the expression file has no obsm[{key!r}]; its obsm keys are {sorted(adata.obsm)}.")
        return adata.obsm[key]
    if not (Path(spec) / "rnapaint_commit.json").is_file():
        _fail(f"{spec} is not a rnapaint TileStore (make one with `rnapaint tile`), nor obsm:KEY.")
    return spec


def tile(
    units: Path = typer.Argument(..., help=".h5ad or .csv/.tsv of units (first column) with a slide path column."),
    store: Path = typer.Option(..., help="TileStore to create or resume."),
    slide_key: str = typer.Option("slide", help="Column of slide paths."),
    tile_size: int = typer.Option(256, help="Tile edge in pixels."),
    mpp: float = typer.Option(0.5, help="Target µm per pixel (20× = 0.5)."),
    max_tiles: int = typer.Option(4000, help="At most this many tiles a slide (0: no limit)."),
    max_background: float = typer.Option(0.6, help="Drop tiles with more glass than this."),
    slide_mpp: float | None = typer.Option(None, help="µm/px for slides that do not record it."),
    jobs: int = typer.Option(1, help="Slides tiled in parallel processes."),
    seed: int = typer.Option(0, help="Seed of the tile draw."),
) -> None:
    """Cut whole-slide images into tissue tiles (resumable: finished slides are skipped)."""
    import rnapaint as rp

    adata = _read_units(units, tables=True)
    if slide_key not in adata.obs:
        _fail(f"{units} has no {slide_key!r} column; its columns are {list(adata.obs.columns)}.")
    with _clear_errors():
        rp.pp.tile_slides(
            adata,
            slide_key=slide_key,
            store=store,
            tile_size=tile_size,
            mpp=mpp,
            max_tiles=max_tiles or None,
            max_background=max_background,
            seed=seed,
            n_jobs=jobs,
            slide_mpp=slide_mpp,
        )
    s = rp.data.TileStore.open(store)
    typer.echo(f"{len(s)} tiles from {len(s.done_slides)} slides in {store}; {len(s.failures)} slides failed.")
    for row in s.failures.itertuples(index=False):
        typer.echo(f"  failed: {row.slide}: {row.error}")
    if len(s) == 0:
        raise typer.Exit(code=1)


def train(
    expression: Path = typer.Argument(
        ..., help=".h5ad of expression units (as the model should see it, e.g. after rp.pp.log1p and rp.pp.zscore)."
    ),
    out: Path = typer.Option(..., help="Model directory to write (safetensors + JSON)."),
    method: str = typer.Option("rnagan", help="vae, rnagan, gan or cdm."),
    tiles: str | None = typer.Option(
        None, help="TileStore path, or obsm:KEY for tiles held in the .h5ad (generators only)."
    ),
    vae: Path | None = typer.Option(None, help="Trained β-VAE directory (rnagan, cdm): encodes the profiles."),
    split_key: str = typer.Option("split", help="obs column: train on units marked 'train' when it exists."),
    max_steps: int | None = typer.Option(None, help="Training steps (generators; cdm: for each stage)."),
    minutes: float | None = typer.Option(None, help="Training time limit in minutes (generators)."),
    max_epochs: int | None = typer.Option(None, help="Epochs (vae; default 300)."),
    batch_size: int | None = typer.Option(None, help="Batch size (default: the model's)."),
    seed: int = typer.Option(0, help="Random seed."),
    model_arg: list[str] | None = typer.Option(
        None, help="Model setting KEY=VALUE (JSON value), repeatable: e.g. width=32, latent_dim=200, hidden=[512,256]."
    ),
    train_arg: list[str] | None = typer.Option(
        None, help="Training setting KEY=VALUE (JSON value), repeatable: e.g. n_critic=5, lr=1e-4, num_workers=8."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing model directory."),
) -> None:
    """Train a β-VAE (method vae) or a tile generator (rnagan, gan, cdm) and save it."""
    import rnapaint as rp

    if method not in ("vae", *GENERATORS):
        _fail(f"--method must be vae, rnagan, gan or cdm, got {method!r}.")
    empty_folder = out.is_dir() and not out.is_symlink() and not any(out.iterdir())  # written into, as the library does
    if out.exists() and not overwrite and not empty_folder:
        _fail(f"{out} exists; pass --overwrite to replace it.")
    adata = _read_units(expression)
    reserved = {
        "seed": "--seed",
        "batch_size": "--batch-size",
        "split_key": "--split-key",
        "save_path": "--out",
        "max_epochs": "--max-epochs",
    }
    model_kw = _key_values(model_arg, "--model-arg", reserved)
    train_kw = _key_values(train_arg, "--train-arg", reserved)
    if batch_size is not None:
        train_kw["batch_size"] = batch_size
    if method == "vae":
        if tiles is not None or max_steps is not None or minutes is not None:
            _fail("--tiles, --max-steps and --minutes are for the generators; a β-VAE takes --max-epochs.")
        if vae is not None:
            _fail("--vae gives a generator its trained β-VAE; --method vae trains a new one: drop --vae.")
        with _clear_errors():
            rp.tl.vae(
                adata,
                max_epochs=300 if max_epochs is None else max_epochs,
                seed=seed,
                split_key=split_key,
                save_path=out,
                **model_kw,
                **train_kw,
            )
        info = adata.uns["vae"]["train_info"]
        typer.echo(
            f"Saved {rp.tl.get_model(adata, 'vae')!r} to {out}; {info['epochs']} epochs, best validation "
            f"loss {info['best_val_loss']}."
        )
        return
    if max_epochs is not None:
        _fail(f"--max-epochs is for --method vae; {method} trains for --max-steps or --minutes.")
    if tiles is None:
        _fail(f"--tiles is required for --method {method}.")
    tiles_arg = _tiles(adata, tiles)
    with _clear_errors():
        vae_model = rp.models.BetaVAE.load(vae) if vae is not None else None
    if method != "gan" and vae_model is None:
        _fail(f"--method {method} is conditioned on the β-VAE latent: pass --vae (train one with --method vae).")
    if max_steps is not None:
        train_kw["max_steps"] = max_steps
    if minutes is not None:
        train_kw["max_time"] = minutes * 60
    if "max_steps" not in train_kw and "max_time" not in train_kw:
        _fail("give --max-steps or --minutes: generators have no natural end.")
    with _clear_errors():
        if vae_model is not None:  # the latent of the β-VAE the model will carry, never a stale one in the file
            adata.obsm["X_vae"] = vae_model.get_latent(adata)
        rp.tl.train_generator(
            adata,
            tiles_arg,
            method=method,
            vae=vae_model,
            split_key=split_key,
            save_path=out,
            model_kwargs=model_kw,
            seed=seed,
            **train_kw,
        )
    typer.echo(f"Saved {method} to {out}: {_trained(adata.uns[f'tile_{method}']['train_info'])}.")


def generate(
    expression: Path = typer.Argument(..., help=".h5ad of profiles with the model's genes."),
    model: Path = typer.Option(..., help="Trained generator directory (rnagan, gan or cdm)."),
    out: Path = typer.Option(..., help="Output: a .zarr TileStore, or an .h5ad (the input with obsm[--key])."),
    n_per_obs: int = typer.Option(4, help="Tiles per profile."),
    key: str | None = typer.Option(None, help="obsm key when --out is an .h5ad (default X_tiles)."),
    seed: int = typer.Option(0, help="Random seed (same seed and inputs: same tiles)."),
    batch_size: int = typer.Option(256, help="Generation batch."),
    sampler: str | None = typer.Option(None, help="cdm: ddpm, ddim, dpm++ or dpm++sde."),
    steps: int | None = typer.Option(None, help="cdm: sampling steps."),
    guidance: float | None = typer.Option(None, help="cdm: classifier-free guidance scale."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
) -> None:
    """Paint tiles for every profile of an .h5ad with a trained generator."""
    import rnapaint as rp

    adata = _read_units(expression)
    if out.exists() and not overwrite:
        _fail(f"{out} exists; pass --overwrite to replace it.")
    as_store = out.suffix.lower() == ".zarr"
    if not as_store and out.suffix.lower() != ".h5ad":
        _fail(f"--out must end in .zarr (TileStore) or .h5ad, got {out.name!r}.")
    if as_store and key is not None:
        _fail("--key names the obsm slot of an .h5ad output; a .zarr TileStore has none: drop --key.")
    key = key or "X_tiles"
    _check_output_folder(out, "--out")
    with _clear_errors():
        m = rp.models.load_model(model)
    kw: dict[str, Any] = {}
    for name, value in (("sampler", sampler), ("steps", steps), ("guidance_scale", guidance)):
        if value is not None:
            if not isinstance(m, rp.models.CascadedDiffusion):
                _fail(f"--{name.split('_')[0]} is a diffusion setting; {model} holds a {type(m).__name__}.")
            kw[name] = value
    with _clear_errors():
        rp.tl.generate(
            adata,
            m,
            n_per_obs=n_per_obs,
            key_added=key,
            store=out if as_store else None,
            seed=seed,
            batch_size=batch_size,
            overwrite=overwrite,
            **kw,
        )
    if not as_store:
        _write_atomic(out, adata.write_h5ad)
    typer.echo(f"{adata.n_obs} × {n_per_obs} tiles of {m.config['image_size']} px in {out}.")


def _trained(info: dict) -> str:
    """``"N steps in S s"``, or one such part per stage (a cascaded diffusion model's train_info)."""
    if "steps" in info:
        return f"{info['steps']} steps in {info.get('seconds', 0):.0f} s"
    stages = [(k, v) for k, v in info.items() if isinstance(v, dict) and "steps" in v]
    return "; ".join(f"{k} stage {v['steps']} steps in {v.get('seconds', 0):.0f} s" for k, v in stages) or "trained"


def evaluate(
    data: Path = typer.Argument(..., help=".h5ad with real tiles, the condition, a split and generated tiles."),
    generated: list[str] = typer.Option(..., help="obsm key of generated tiles, repeatable."),
    out: Path = typer.Option(..., help="Report CSV (method, metric, value, ci_low, ci_high, chance)."),
    figure: Path | None = typer.Option(None, help="Also draw the report (rp.pl.evaluation) to this image."),
    tiles_key: str = typer.Option("tiles", help="obsm key of the real tiles."),
    label_key: str | None = typer.Option(None, help="obs column for condition fidelity (cluster, section...)."),
    rep: str = typer.Option("X_vae", help="obsm key of the condition."),
    split_key: str = typer.Option("split", help="obs column with train/test."),
    vae: Path | None = typer.Option(
        None,
        help="β-VAE directory: computes --rep from the expression (e.g. the generator's own β-VAE, its vae/ folder).",
    ),
    features: str = typer.Option(
        "encoder", help="Image features compared: 'encoder' (a TileEncoder's) or 'nuclei' (nothing trained)."
    ),
    encoder: Path | None = typer.Option(None, help="Trained TileEncoder directory (default: train one)."),
    encoder_epochs: int | None = typer.Option(
        None, help="SimCLR epochs of the encoder trained when no --encoder is given (default 30)."
    ),
    mpp: float | None = typer.Option(None, help="µm per pixel of the tiles (nuclei sizes)."),
    inception: bool = typer.Option(False, help="Also KID/FID with the FID Inception (needs rnapaint[fid])."),
    n_boot: int = typer.Option(100, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Random seed."),
    contrast: list[str] = typer.Option(
        [],
        help="A,B (two --generated keys): the paired condition-fidelity (and, with --composition, "
        "composition-agreement) difference A − B with its interval; repeatable.",
    ),
    composition: list[str] = typer.Option(
        [],
        help="FEATURE=TYPE[,TYPE...]: Spearman ρ between a nuclei feature of the tiles (density, "
        "hematoxylin_fraction, small_round_fraction...) and the units' summed shares of those cell types "
        "(--proportions-key); repeatable.",
    ),
    proportions_key: str = typer.Option(
        "cell_type_proportions", help="obsm key of the units' cell shares (a DataFrame), for --composition."
    ),
) -> None:
    """Score generated tiles against held-out real ones, with the real and nearest-neighbour baselines."""
    import rnapaint as rp

    if features not in ("encoder", "nuclei"):
        _fail(f"--features must be 'encoder' or 'nuclei', got {features!r}.")
    if features == "nuclei" and encoder is not None:
        _fail("--features nuclei measures nuclei and trains nothing: drop --encoder.")
    if encoder_epochs is not None and (encoder is not None or features == "nuclei"):
        _fail("--encoder-epochs sets the training of a new encoder: not used with --encoder or --features nuclei.")
    _check_output_folder(out, "--out")
    if figure is not None:
        _check_output_folder(figure, "--figure")
    pairs = [tuple(k.strip() for k in c.split(",")) for c in contrast]
    if any(len(pr) != 2 for pr in pairs):
        _fail(f"--contrast takes two obsm keys separated by a comma (A,B), got {contrast}.")
    unknown = sorted({k for pr in pairs for k in pr} - set(generated))
    if unknown:
        _fail(f"--contrast names {unknown}, which are not among --generated {generated}.")
    cells = {}
    for c in composition:
        feat, _, types = c.partition("=")
        named = [t.strip() for t in types.split(",") if t.strip()]
        if not feat.strip() or not named:
            _fail(f"--composition takes FEATURE=TYPE[,TYPE...] (e.g. density=Epithelial), got {c!r}.")
        cells[feat.strip()] = named
    adata = _read_units(data)
    with _clear_errors():
        enc = rp.models.TileEncoder.load(encoder) if encoder is not None else None
        if vae is not None:
            adata.obsm[rep] = rp.models.BetaVAE.load(vae).get_latent(adata)
        report = rp.tl.evaluate(
            adata,
            generated,
            tiles_key=tiles_key,
            label_key=label_key,
            rep=rep,
            split_key=split_key,
            features=features,
            encoder=enc,
            encoder_kwargs={"epochs": 30 if encoder_epochs is None else encoder_epochs},
            inception=inception,
            mpp=mpp,
            n_boot=n_boot,
            seed=seed,
            contrasts=pairs,
            composition=cells or None,
            proportions_key=proportions_key,
        )
    outputs = [(out, lambda p: report.to_csv(p, index=False))]
    if figure is not None:
        outputs.append((figure, lambda p: rp.pl.evaluation(report, show=False, save=p)))
    with _clear_errors():  # both written, or neither
        _write_all_atomic(outputs)
    typer.echo(report.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
