"""The examples run: every fastrnn module's docstring examples (doctest, with
NORMALIZE_WHITESPACE and ELLIPSIS) and the ``python`` blocks of README.md and
docs/*.md, so what a reader copies works as written.

A Markdown block fenced as ```python runs: as a doctest when it is written
with ``>>>`` prompts, as a script otherwise (in a temporary directory, since
README's Usage writes a file). Blocks fenced otherwise (```bash, plain ```)
are commands or output and are not run.
"""
import doctest
import importlib
import os
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import fastrnn

# Keras 3 runs on its torch backend in this suite (as tests/formats/ does);
# set before any example imports keras, whatever order the tests run in.
os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[2]
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _modules():
    names = [fastrnn.__name__]
    for info in pkgutil.walk_packages(fastrnn.__path__, fastrnn.__name__ + "."):
        names.append(info.name)
    return sorted(names)


def _markdown_files():
    """The Markdown files whose python blocks run: README.md and docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks(md):
    """[(line, code)] of the ```python blocks of one Markdown file."""
    text = md.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.M | re.S)]


def _run_doctests(tests):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test, out=report.append, clear_globs=False)
    return runner


report = []  # the failing examples' reports of the running test


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    """Each example in a temporary directory, with NumPy's default print options."""
    monkeypatch.chdir(tmp_path)
    report.clear()
    with np.printoptions(legacy=False):
        yield


@pytest.mark.parametrize("name", _modules())
def test_module_doctests(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional package (matplotlib, onnx, ...) missing
        pytest.skip(f"{name}: {e}")
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    if not tests:
        return
    runner = _run_doctests(tests)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("path", _markdown_files(),
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_python_blocks(path):
    """A page's blocks run in order in one namespace, as a reader runs them."""
    namespace = {"__name__": "__main__"}
    for line, code in _python_blocks(path):
        where = f"{path.name}:{line}"
        if code.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(code, namespace, where,
                                                       str(path), line)
            runner = _run_doctests([test])
            assert runner.failures == 0, "".join(report)
            namespace.update(test.globs)  # DocTest ran on a copy
        else:
            exec(compile(code, where, "exec"), namespace)


def test_there_are_examples():
    """The collection works: README has python blocks, fastrnn has doctests."""
    assert _python_blocks(ROOT / "README.md")
    found = sum(len(t.examples) for t in doctest.DocTestFinder().find(fastrnn.recurrent))
    assert found, "no doctest examples in fastrnn.recurrent"
