"""``rnapaint`` command: ``demo``, ``tile``, ``train``, ``generate``, ``evaluate``, ``virtual-he``, ``--version``."""

from __future__ import annotations

from pathlib import Path

import typer

from . import pipeline
from .virtual_he import virtual_he

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rnapaint: learn how gene expression shapes tissue and paint H&E tiles.",
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"rnapaint {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """rnapaint command line."""


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Folder for the figures and summary."),
    data: Path | None = typer.Option(None, help="Data root (default $RNAPAINT_DATA)."),
    quick: bool = typer.Option(False, help="A tiny setting that runs in well under a minute."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """TCGA → β-VAE (UMAP, synthetic profiles, tumour shifts); toy expression → RNA-GAN, GAN and RNA-CDM tiles."""
    from .demo import run_demo

    summary = run_demo(out=out, root=data, quick=quick, seed=seed)
    typer.echo(summary)


app.command()(pipeline.tile)
app.command()(pipeline.train)
app.command()(pipeline.generate)
app.command()(pipeline.evaluate)
app.command(name="virtual-he")(virtual_he)


def main() -> None:
    """Entry point of the ``rnapaint`` script."""
    app()
