"""The tutorials run end to end as notebooks (jupytext → nbclient) in their fast setting."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
RESULT = re.compile(r"^TUTORIAL-RESULT (.*)$", re.MULTILINE)


def _kernel_manager():
    """A kernel manager for ipykernel running on *this* interpreter (the venv's).

    ``kernel_dirs=[]`` skips every installed kernelspec (a user-level ``python3`` spec may name
    another interpreter), so ``python3`` resolves to ipykernel's built-in spec, whose command is
    ``sys.executable -m ipykernel_launcher``. Nothing needs to be installed for it.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    ksm = KernelSpecManager(kernel_dirs=[])
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    argv = km.kernel_spec.argv
    assert Path(argv[0]).resolve() == Path(sys.executable).resolve(), argv
    return km


def _execute(path: Path, env: dict[str, str], timeout: int = 600):
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # A CellExecutionError names the failing cell and carries its traceback.
    client.execute(env=env)
    return nb


def _outputs(nb, kind: str) -> list:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [o for c in code for o in c.get("outputs", []) if o.output_type == kind]


def _text(nb) -> str:
    return "".join(o.text for o in _outputs(nb, "stream"))


def _run(name: str, data_root, fast: bool = True) -> tuple[int, dict[str, float]]:
    """Execute a tutorial; return its number of inline figures and its TUTORIAL-RESULT numbers."""
    env = {**os.environ, "RNAPAINT_DATA": str(Path(data_root).resolve())}
    if fast:
        env["RNAPAINT_TUTORIAL_FAST"] = "1"
    env.pop("MPLBACKEND", None)  # let ipykernel pick its inline backend, as in Jupyter
    nb = _execute(TUTORIALS / name, env)
    assert not _outputs(nb, "error")
    n_figures = sum("image/png" in o.get("data", {}) for o in _outputs(nb, "display_data"))
    found = RESULT.findall(_text(nb))
    assert len(found) == 1, "the last cell prints one TUTORIAL-RESULT line"
    return n_figures, {k: float(v) for k, v in (item.split("=") for item in found[0].split())}


@pytest.mark.slow
def test_tcga_vae_tutorial(data_root):
    n_figures, result = _run("tcga_vae.py", data_root)
    assert n_figures >= 3, f"expected the history and two UMAP figures inline, got {n_figures}"
    assert result["rmse_test"] < 1.0  # better than predicting the training mean of every gene
    # The loaded model on the re-aligned test patients (1 % genes missing) performs as in-session.
    assert abs(result["rmse_external"] - result["rmse_test"]) < 0.1
    assert result["knn_sample_type_test"] > 0.7


@pytest.mark.slow
def test_tiles_tutorial(data_root):
    n_figures, result = _run("tiles.py", data_root, fast=False)
    assert n_figures >= 5, f"expected the section, three tile grids and the tiling map, got {n_figures}"
    assert result["spots"] == 187 and result["patches"] == 187  # HER2ST C2: every spot gets its patch
    assert result["wsi_tiles"] > 10


@pytest.mark.slow
def test_her2st_rnagan_tutorial(data_root):
    n_figures, result = _run("her2st_rnagan.py", data_root)
    assert n_figures >= 3, f"expected the history, the C5 grid and the C1 mosaic, got {n_figures}"
    assert result == {"c5_spots": 181, "c1_spots": 176, "steps": 100}


@pytest.mark.slow
def test_cascaded_diffusion_tutorial(tmp_path):
    n_figures, result = _run("cascaded_diffusion.py", tmp_path)  # the toy set needs no data
    assert n_figures >= 4, f"expected the history, two tile grids and the response figure, got {n_figures}"
    assert result["rho_w2"] >= 0.5 > abs(result["rho_w0"])  # guidance makes the tiles follow the density program
    assert result["enrich_gain"] > 0  # enriching with the dense group's profile adds nuclei
    assert result["identical"] == 1
