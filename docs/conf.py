"""Sphinx configuration of the rnapaint documentation (``make docs``)."""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO / "src"))  # the package is installed editable; this only makes sure

import rnapaint

# -- Project ---------------------------------------------------------------------------------------
project = "rnapaint"
author = "the rnapaint developers"
copyright = "2025, the rnapaint developers"
version = release = rnapaint.__version__

# -- Tutorials: copied from ../tutorials (jupytext percent scripts) at build time --------------------
# Sphinx reads sources only under docs/, so the tutorials are copied into docs/tutorials_build/
# (git-ignored). copy2 keeps the modification time, so unchanged tutorials are not rebuilt.
TUTORIALS_SRC = REPO / "tutorials"
TUTORIALS_BUILD = DOCS / "tutorials_build"
TUTORIALS_BUILD.mkdir(exist_ok=True)
_tutorials = sorted(TUTORIALS_SRC.glob("*.py"))
for _stale in TUTORIALS_BUILD.glob("*.py"):
    if not (TUTORIALS_SRC / _stale.name).is_file():
        _stale.unlink()
for _src in _tutorials:
    _dst = TUTORIALS_BUILD / _src.name
    if not _dst.is_file() or _dst.read_bytes() != _src.read_bytes():
        shutil.copy2(_src, _dst)

# -- General ---------------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "conf.py", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# MyST (Markdown) and myst-nb (notebooks, including jupytext percent scripts).
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "off"  # the test suite executes the tutorials; the docs build offline and fast
nb_merge_streams = True

# autodoc / autosummary / napoleon (numpy-style docstrings).
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True
# rnapaint's Returns sections are prose ("``None``, or the copy when ``copy=True``. Writes ..."),
# not numpy's "type / indented description" entries: render them as a paragraph under a rubric,
# instead of letting napoleon read the first line as a type and split lines on colons.
napoleon_custom_sections = ["Returns"]

# -- HTML ------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"rnapaint {version}"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
}


# -- Completeness of the API page -------------------------------------------------------------------
# docs/api.md lists the members by hand (grouped, in reading order). A public name (in a layer's
# __all__) missing from it is a warning, hence an error under `make docs` (-W).
API_LAYERS = ("io", "datasets", "pp", "data", "nn", "models", "metrics", "tl", "pl")


def _documented_api() -> dict[str, set[str]]:
    documented: dict[str, set[str]] = {}
    layer = None
    for line in (DOCS / "api.md").read_text().splitlines():
        m = re.fullmatch(r"\.\. currentmodule:: rnapaint\.(\w+)", line.strip())
        if m:
            layer = m.group(1)
        elif layer and (m := re.fullmatch(r" {3}~?([A-Za-z_]\w*)", line)):
            documented.setdefault(layer, set()).add(m.group(1))
    return documented


def _check_api_complete(app) -> None:
    from sphinx.util import logging

    log = logging.getLogger("rnapaint.docs")
    documented = _documented_api()
    modules = {layer: importlib.import_module(f"rnapaint.{layer}") for layer in API_LAYERS}
    seen = {id(getattr(modules[la], n)) for la, names in documented.items() for n in names if la in modules}
    for layer, module in modules.items():
        missing = [
            n for n in module.__all__ if n not in documented.get(layer, set()) and id(getattr(module, n)) not in seen
        ]
        if missing:
            log.warning(f"rnapaint.{layer} exports {missing}, which docs/api.md does not list", location="api")


def setup(app):
    app.connect("builder-inited", _check_api_complete)
