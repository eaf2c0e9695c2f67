"""numpydoc validation of every public docstring.

The public API is walked, not listed (tests/docs/_public_api.py): every name of
``fastrnn.__all__``, the public names of the submodules it exports
(``fr.losses``, ``fr.optim``, ``fr.formats``, ``fr.backends``), and the public
methods and properties of each class, so a name added later is checked
without editing this file. Each object is validated once, where it is
defined; a method override without a docstring of its own inherits its base's
(``inspect.getdoc``, ``help()``) and is validated on the base.

Enforced numpydoc codes (``numpydoc.validate.ERROR_MSGS`` has their texts):

- GL08 a docstring exists; SS01 it has a summary;
- PR01 / PR02 / PR03 every parameter documented, none unknown, in order;
  PR04 / PR07 each with a type and a description; PR06 / PR10 type spelling
  ("int", not "integer") and "name : type" form;
- RT01 / RT03 a Returns section with a description where the code returns
  a value; YD01 a Yields section for generators;
- GL06 / GL07 / GL10 known sections, in numpydoc's order, well-formed reST
  directives;
- EX01 an Examples section on the top-level classes and functions of
  ``fastrnn.__all__`` (their examples run as doctests: test_doctests.py).

Excluded, with the reason:

- ES01 extended summary, SA01-SA04 See Also: useful where there is
  something to say, noise where there is not; not required.
- EX01 on methods, submodules' names and modules: the class's example
  shows its methods in use; the submodules' names are reached through it.
- GL01 / GL02 / GL03 quote placement and blank lines, SS02-SS06 the summary's
  capital, period, verb form and single line, PR05 / PR08 / PR09 and RT02 /
  RT04 / RT05 capitals and periods: typography. Summaries here often wrap
  or open with a code name (``fr.save``), descriptions with a shape
  ("(T, B, I) array"); none of that hinders a reader or the HTML build.
"""
import sys
from pathlib import Path

import pytest

pytest.importorskip("numpydoc", reason="the docstring checks need numpydoc (the test extra)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _public_api  # noqa: E402

ENFORCED = {"GL06", "GL07", "GL08", "GL10", "SS01",
            "PR01", "PR02", "PR03", "PR04", "PR06", "PR07", "PR10",
            "RT01", "RT03", "YD01"}
TOP_LEVEL_ONLY = {"EX01"}

OBJECTS = _public_api.public_objects()
TOP_LEVEL = _public_api.top_level_names()


def offences(path):
    """[(code, message)] of the enforced checks that path fails."""
    codes = ENFORCED | (TOP_LEVEL_ONLY if path in TOP_LEVEL else set())
    return [(code, msg) for code, msg in _public_api.validate(path)["errors"]
            if code in codes]


def test_public_api_is_walked():
    paths = {p for p, _, _ in OBJECTS}
    # a few names that must be found, so that the walk cannot silently shrink
    for must in ["fastrnn.recurrent.LSTM", "fastrnn.model.Sequential.fit",
                 "fastrnn.recurrent.RNNBase.forward", "fastrnn.losses.CrossEntropy",
                 "fastrnn.optim.Adam", "fastrnn.formats.native.save"]:
        assert must in paths, must
    assert "fastrnn.recurrent.LSTM" in TOP_LEVEL
    assert len(OBJECTS) > 100


def test_numpydoc_validation():
    bad = {}
    for path, _, _ in OBJECTS:
        errs = offences(path)
        if errs:
            bad[path] = errs
    report = "\n".join(f"{path}: {code} {msg}" for path, errs in sorted(bad.items())
                       for code, msg in errs)
    assert not bad, (f"{len(bad)} public docstrings fail numpydoc's checks "
                     f"(enforced: {sorted(ENFORCED | TOP_LEVEL_ONLY)}):\n{report}")


def test_planted_missing_parameter_is_caught(tmp_path, monkeypatch):
    """The check itself: a function whose docstring leaves out a parameter
    fails PR01, one with no docstring GL08, one with no Returns RT01."""
    mod = tmp_path / "planted_docs_mod.py"
    mod.write_text('''
def documented(a, b):
    """Add two numbers.

    Parameters
    ----------
    a : int
        The first.

    Returns
    -------
    int
        The sum.
    """
    return a + b


def undocumented(a):
    return a


def no_returns(a):
    """Return a.

    Parameters
    ----------
    a : int
        A number.
    """
    return a
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [c for c, _ in offences("planted_docs_mod.documented")] == ["PR01"]
    assert "GL08" in [c for c, _ in offences("planted_docs_mod.undocumented")]
    assert [c for c, _ in offences("planted_docs_mod.no_returns")] == ["RT01"]
