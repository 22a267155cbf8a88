"""The ``rnapaint`` command line (typer)."""

from .main import app, main

__all__ = ["app", "main"]
