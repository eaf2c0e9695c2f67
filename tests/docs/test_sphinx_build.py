"""The HTML documentation builds: ``sphinx-build -W -b html docs <tmp>``
(warnings are errors), offline (docs/conf.py uses no intersphinx), into a
temporary directory, never into the repository. Skips without sphinx,
numpydoc or myst-parser (the docs and test extras install them)."""
import subprocess
import sys
from pathlib import Path

import pytest

for _pkg in ("sphinx", "numpydoc", "myst_parser"):
    pytest.importorskip(_pkg, reason="the docs build needs sphinx, numpydoc and "
                                     "myst-parser (pip install -e '.[docs]')")

ROOT = Path(__file__).resolve().parents[2]


def test_sphinx_html_build_has_no_warnings(tmp_path):
    out, doctrees = tmp_path / "html", tmp_path / "doctrees"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(doctrees), str(ROOT / "docs"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    for page in ["index.html", "getting-started.html", "performance.html",
                 "architecture.html", "results-examples.html", "api/layers.html"]:
        assert (out / page).is_file(), page
    layers = (out / "api" / "layers.html").read_text(encoding="utf-8")
    assert "fastrnn.LSTM" in layers and "hidden_size" in layers
    # nothing was written into the repository
    assert not (ROOT / "docs" / "_build").exists()
