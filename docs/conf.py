"""Sphinx configuration of fastrnn's documentation.

Build (what tests/docs/test_sphinx_build.py runs, offline, warnings as errors):

    python -m sphinx -W -b html docs /tmp/fastrnn-html

The API pages are made from the docstrings at build time: each
``.. fastrnn-api:: GROUP`` line of docs/api/*.rst becomes autodoc directives
for the public names of that group (see ``_api_lines``), walked from
``fastrnn.__all__``, so a new public name appears without editing the pages;
a name of no group lands on docs/api/other.rst.
"""
import importlib
import inspect
import os
import sys
import types

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import fastrnn  # noqa: E402

project = "fastrnn"
author = "fastrnn's authors"
copyright = "fastrnn's authors"
release = version = fastrnn.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
html_theme = "alabaster"
html_static_path = []
templates_path = []

autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False   # autodoc's :members: lists them once
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
myst_heading_anchors = 3
# the results pages link files of the repository that are not pages
suppress_warnings = ["myst.xref_missing"]

# ---------------------------------------------------------------------------
# The API pages. Group of an object: by the module that defines it.
GROUPS = {
    "layers": ["fastrnn.recurrent", "fastrnn.regularized", "fastrnn.layers"],
    "model": ["fastrnn.model", "fastrnn.streaming", "fastrnn.seq2seq", "fastrnn.decoding"],
    "losses": ["fastrnn.losses"],
    "optim": ["fastrnn.optim"],
    "formats": ["fastrnn.formats"],
    "runtime": ["fastrnn.backends", "fastrnn._version"],
    "sklearn": ["fastrnn.sklearn"],
    "distributed": ["fastrnn.distributed"],
}
# Public modules `import fastrnn` does not import (optional packages).
OPTIONAL_MODULES = ["fastrnn.sklearn", "fastrnn.distributed"]


def _group(modname):
    for group, prefixes in GROUPS.items():
        if any(modname == p or modname.startswith(p + ".") for p in prefixes):
            return group
    return "other"


def _entries():
    """[(group, public path, object)]: fastrnn.__all__ first (fr.LSTM), then the
    public names of the exported submodules not already listed (fr.optim.Adam);
    each object once."""
    seen, out = set(), []

    def add(path, obj, home):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        out.append((_group(home), path, obj))

    submodules = []
    for name in fastrnn.__all__:
        obj = getattr(fastrnn, name)
        if isinstance(obj, types.ModuleType):
            submodules.append(obj)
        elif inspect.isclass(obj) or callable(obj):
            add(f"fastrnn.{name}", obj, obj.__module__)
    for modname in OPTIONAL_MODULES:
        try:
            submodules.append(importlib.import_module(modname))
        except ImportError:
            pass
    for mod in submodules:
        add(mod.__name__, mod, mod.__name__)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or callable(obj):
                add(f"{mod.__name__}.{name}", obj, mod.__name__)
    return out


def _api_lines(group):
    lines = []
    for g, path, obj in _entries():
        if g != group:
            continue
        if isinstance(obj, types.ModuleType):
            lines += [f".. automodule:: {path}", "   :no-members:", ""]
        elif inspect.isclass(obj):
            lines += [f".. autoclass:: {path}", "   :members:", "   :show-inheritance:",
                      ""]
        else:
            lines += [f".. autofunction:: {path}", ""]
    return lines or ["(none)", ""]


def _fill_api(app, docname, source):
    if ".. fastrnn-api::" not in source[0]:
        return
    out = []
    for line in source[0].splitlines():
        if line.startswith(".. fastrnn-api::"):
            out += _api_lines(line.split("::", 1)[1].strip())
        else:
            out.append(line)
    source[0] = "\n".join(out) + "\n"


def _skip_member(app, what, name, obj, skip, options):
    """scikit-learn generates set_*_request methods on every estimator (metadata
    routing); they are sklearn's API, documented there, not fastrnn's."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("source-read", _fill_api)
    app.connect("autodoc-skip-member", _skip_member)
