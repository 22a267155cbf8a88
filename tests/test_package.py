"""Package-level promises: lazy imports, the layer order of the design, the command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rnapaint as rp

SRC = Path(rp.__file__).parent
LAYERS = ["io", "datasets", "pp", "data", "nn", "models", "metrics", "tl", "pl", "cli"]


def test_import_is_lazy():
    """`import rnapaint` must not pull torch, lightning or scanpy (that is what keeps it fast)."""
    code = (
        "import sys, rnapaint as rp; heavy = [m for m in ('torch', 'lightning', 'scanpy', 'anndata', "
        "'matplotlib', 'sklearn') if m in sys.modules]; print(rp.__version__, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{rp.__version__} []"
    for name in ("io", "datasets", "pp", "tl", "pl"):
        assert getattr(rp, name).__name__ == f"rnapaint.{name}"
    with pytest.raises(AttributeError):
        rp.nothing_here  # noqa: B018


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            rel = path.relative_to(SRC).parts
            # Resolve `from ..x import` / `from . import x` to the top-level package under rnapaint.
            base = list(rel[:-1])[: max(0, len(rel) - node.level)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnapaint."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rnapaint."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("layer", [layer for layer in LAYERS if (SRC / layer).is_dir()])
def test_layers_import_only_earlier_layers(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    for path in (SRC / layer).rglob("*.py"):
        used = {m for m in _imported_layers(path) if m in LAYERS}
        assert used <= allowed, f"{path.relative_to(SRC)} imports later layers {sorted(used - allowed)}"


def test_nn_never_imports_anndata():
    for path in (SRC / "nn").rglob("*.py"):
        assert "anndata" not in path.read_text(), path


def test_cli_version_and_help():
    from typer.testing import CliRunner

    from rnapaint.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and rp.__version__ in res.stdout
    res = runner.invoke(app, ["demo", "--help"])
    assert res.exit_code == 0 and "--quick" in res.stdout
