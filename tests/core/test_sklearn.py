"""fastrnn.sklearn: RNNClassifier and RNNRegressor as scikit-learn
estimators. scikit-learn's estimator checks (those that do not apply to
sequences are listed, with the reason, in EXPECTED_FAILED and
docs/sklearn.md), the inputs (3-D, 2-D, lists of variable-length
sequences), labels of any type, partial_fit, warm_start, early stopping
restoring the best weights, Pipeline and GridSearchCV(n_jobs=2), pickling and
bit-identical seeded fits.

The file runs its kernels on one thread (the `one_thread` fixture): the bits
do not depend on the thread count, and on a shared 2-core machine two threads
that meet at every step were many times slower here.
"""
import doctest
import inspect
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastrnn as fr  # noqa: E402
import fastrnn.sklearn as frsk  # noqa: E402
from fastrnn.sklearn import RNNClassifier, RNNRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread(restore_threads):
    fr.set_num_threads(1)
    yield


def _small(cls, **kw):
    """Small and quick, and still able to learn scikit-learn's check data."""
    return cls(**{"hidden_size": 8, "epochs": 50, "learning_rate": 1e-2, **kw})


# ---- scikit-learn's estimator checks ------------------------------------------------
# The checks feed tabular X (n_samples, n_features); these estimators read a
# 2-D X as (N, T) sequences of one feature per step, so a different number of
# "features" (columns) is a different sequence length, which is valid input.
_LENGTHS_VARY = ("a 2-D X is (N, T) sequences of one feature per step; "
                 "n_features_in_ is the features per step (1), not X.shape[1]")
EXPECTED_FAILED = {
    "check_n_features_in": _LENGTHS_VARY,
    "check_n_features_in_after_fitting": _LENGTHS_VARY + ", and X[:, [1]] "
                                         "(sequences of one step) is valid input",
    "check_estimators_partial_fit_n_features": "X[:, :-1] is shorter sequences of the "
                                               "same one feature per step: valid input",
    "check_classifiers_train": "predict(X.T) must raise, but X.T is 2 sequences of 300 "
                               "steps: valid input (the accuracy part of the check is "
                               "test_learns_the_blobs_of_check_classifiers_train)",
}


def _expected_failed(estimator):
    return EXPECTED_FAILED


_KW = {}
if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters:
    _KW["xfail_strict"] = True  # a check that starts passing shows up (sklearn >= 1.8)


@parametrize_with_checks([_small(RNNClassifier), _small(RNNRegressor)],
                         expected_failed_checks=_expected_failed, **_KW)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_learns_the_blobs_of_check_classifiers_train():
    """The part of check_classifiers_train that applies: > 0.83 training
    accuracy on its blobs, binary and 3 classes, from arrays and lists."""
    from sklearn.datasets import make_blobs
    from sklearn.metrics import accuracy_score
    from sklearn.utils import shuffle
    X, y = make_blobs(n_samples=300, random_state=0)
    X, y = shuffle(X, y, random_state=7)
    X = StandardScaler().fit_transform(X)
    for Xp, yp in ((X[y != 2], y[y != 2]), (X, y)):
        clf = _small(RNNClassifier, random_state=0).fit(Xp, yp)
        assert accuracy_score(yp, clf.predict(Xp)) > 0.83
        clf.fit(Xp.tolist(), yp.tolist())
        assert clf.predict(Xp).shape == (len(yp),)
        assert accuracy_score(yp, clf.predict(Xp)) > 0.83


def test_tags():
    for est in (RNNClassifier(), RNNRegressor()):
        tags = est.__sklearn_tags__()
        assert tags.input_tags.three_d_array and tags.input_tags.two_d_array
        assert not tags.input_tags.allow_nan and not tags.input_tags.sparse
    assert RNNRegressor().__sklearn_tags__().target_tags.multi_output
    assert not RNNClassifier().__sklearn_tags__().target_tags.multi_output


# ---- data -----------------------------------------------------------------------
def _sequences(rng, n=48, F=2, tmin=3, tmax=10):
    """Variable-length sequences, the label the sign of the first feature's sum."""
    seqs = [rng.normal(size=(int(rng.integers(tmin, tmax + 1)), F)) for _ in range(n)]
    y = np.array([s[:, 0].sum() for s in seqs])
    return seqs, y


def _quick(cls, **kw):
    return cls(**{"hidden_size": 6, "epochs": 3, "random_state": 0, **kw})


# ---- inputs ---------------------------------------------------------------------
def test_two_d_is_one_feature_per_step(rng):
    X = rng.normal(size=(20, 7))
    y = (X.sum(axis=1) > 0).astype(int)
    a = _quick(RNNClassifier).fit(X, y)
    b = _quick(RNNClassifier).fit(X[:, :, None], y)
    assert a.n_features_in_ == b.n_features_in_ == 1
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X[:, :, None]))
    # other lengths predict too (the same network runs any T)
    assert a.predict(X[:, :3]).shape == (20,)


def test_variable_length_lists(rng):
    seqs, y = _sequences(rng)
    reg = _quick(RNNRegressor, pooling="mean").fit(seqs, y)
    assert reg.n_features_in_ == 2
    full = reg.predict(seqs)
    one_by_one = np.concatenate([reg.predict(s[None]) for s in seqs[:6]])
    np.testing.assert_allclose(full[:6], one_by_one, rtol=1e-5, atol=1e-6)
    # 1-D sequences are (T_i, 1); an object array of sequences is a list
    seqs1 = [s[:, 0] for s in seqs]
    a = _quick(RNNRegressor).fit(seqs1, y)
    b = _quick(RNNRegressor).fit([s[:, None] for s in seqs1], y)
    np.testing.assert_array_equal(a.predict(seqs1), b.predict([s[:, None] for s in seqs1]))
    obj = np.empty(len(seqs1), dtype=object)
    obj[:] = seqs1
    np.testing.assert_array_equal(a.predict(obj), a.predict(seqs1))


def test_padding_never_counts(rng):
    """A list of sequences is padded internally and run with its lengths:
    the same predictions whatever the longest sequence beside them."""
    seqs, y = _sequences(rng, n=24)
    for pooling in ("last", "mean", "max", "attention"):
        clf = _quick(RNNClassifier, pooling=pooling).fit(seqs, y > 0)
        long = rng.normal(size=(40, 2))
        with_long = clf.predict_proba(seqs[:5] + [long])[:5]
        np.testing.assert_allclose(with_long, clf.predict_proba(seqs[:5]),
                                   rtol=1e-5, atol=1e-6)


def test_string_labels_and_classes(rng):
    X = rng.normal(size=(30, 5, 2)).astype(np.float32)
    y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, 30)]
    clf = _quick(RNNClassifier).fit(X, list(y))
    assert clf.classes_.tolist() == ["cat", "dog", "emu"]
    proba = clf.predict_proba(X)
    assert proba.shape == (30, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert 0 <= clf.score(X, y) <= 1


def test_regressor_shapes_and_scaling(rng):
    X = rng.normal(size=(40, 6, 3))
    y2 = np.stack([X[:, :, 0].sum(axis=1) * 100 + 5, X[:, -1, 1]], axis=1)
    reg = _quick(RNNRegressor, epochs=30, learning_rate=1e-2).fit(X, y2)
    assert reg.predict(X).shape == (40, 2) and reg.predict(X).dtype == np.float64
    np.testing.assert_allclose(reg.y_mean_, y2.mean(axis=0))
    assert reg.score(X, y2) > 0.5  # the standardized targets make the scale harmless
    reg1 = _quick(RNNRegressor).fit(X, y2[:, 0])
    assert reg1.predict(X).shape == (40,)
    assert reg1.fit(X, y2[:, :1]).predict(X).shape == (40, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_cell_and_layout(rng, cell):
    seqs, y = _sequences(rng, n=16)
    for kw in (dict(pooling="attention"), dict(bidirectional=True, num_layers=2, dropout=0.2,
                                               pooling="max")):
        clf = _quick(RNNClassifier, cell=cell, epochs=1, **kw).fit(seqs, y > 0)
        assert clf.predict(seqs).shape == (16,)
    clf = _quick(RNNClassifier, cell=cell.upper(), dtype="float64", epochs=1).fit(seqs, y > 0)
    assert clf.predict_proba(seqs).dtype == np.float64


# ---- reproducibility, pickling, cloning -----------------------------------------------
def _weights(est):
    return est.model_.state_dict()


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_seeded_fits_are_identical(rng):
    seqs, y = _sequences(rng)
    kw = dict(dropout=0.3, num_layers=2, epochs=4)
    a = _quick(RNNClassifier, **kw).fit(seqs, y > 0)
    b = _quick(RNNClassifier, **kw).fit(seqs, y > 0)
    _same_weights(a, b)
    assert a.history_ == b.history_
    c = _quick(RNNClassifier, random_state=1, **kw).fit(seqs, y > 0)
    assert not np.array_equal(_weights(a)["0.weight_hh_l0"], _weights(c)["0.weight_hh_l0"])
    # fit again on the same estimator: the same bits (no warm start)
    _same_weights(a.fit(seqs, y > 0), b)
    fr.set_num_threads(2)  # and on two threads (the fixture puts the setting back)
    _same_weights(_quick(RNNClassifier, **kw).fit(seqs, y > 0), b)


def test_pickle_round_trip_and_clone(rng):
    seqs, y = _sequences(rng)
    for est in (_quick(RNNClassifier).fit(seqs, y > 0), _quick(RNNRegressor).fit(seqs, y)):
        back = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(back.predict(seqs), est.predict(seqs))
        _same_weights(back, est)
        # the copy trains on its own arrays (its optimizer holds the copy's)
        before = est.predict(seqs)
        back.partial_fit(seqs, y > 0 if isinstance(est, RNNClassifier) else y)
        np.testing.assert_array_equal(est.predict(seqs), before)
        assert not np.array_equal(_weights(back)["0.weight_hh_l0"],
                                  _weights(est)["0.weight_hh_l0"])
        fresh = clone(est)
        assert fresh.get_params() == est.get_params()
        assert not hasattr(fresh, "model_")
        with pytest.raises(NotFittedError):
            fresh.predict(seqs)


# ---- partial_fit, warm_start, early stopping ----------------------------------------
def test_partial_fit(rng):
    seqs, y = _sequences(rng)
    labels = np.where(y > 0, "pos", "neg")
    with pytest.raises(ValueError, match="classes: required on the first call"):
        _quick(RNNClassifier).partial_fit(seqs, labels)
    a = _quick(RNNClassifier)
    b = _quick(RNNClassifier)
    for part in np.array_split(np.arange(len(seqs)), 3):
        a.partial_fit([seqs[i] for i in part], labels[part], classes=["neg", "pos"])
        b.partial_fit([seqs[i] for i in part], labels[part],
                      classes=["neg", "pos"] if part[0] == 0 else None)
    assert a.n_iter_ == 3 and len(a.history_["loss"]) == 3
    _same_weights(a, b)
    with pytest.raises(ValueError, match="not among the classes"):
        a.partial_fit(seqs[:3], ["neg", "pos", "owl"])
    with pytest.raises(ValueError, match="classes: expected the classes of the first call"):
        a.partial_fit(seqs[:3], labels[:3], classes=["neg", "owl", "pos"])
    with pytest.raises(ValueError, match="features per step"):
        a.partial_fit([s[:, :1] for s in seqs[:3]], labels[:3])
    reg = _quick(RNNRegressor)
    reg.partial_fit(seqs, y).partial_fit(seqs, y)
    assert reg.n_iter_ == 2
    with pytest.raises(ValueError, match="y: expected 1 target"):
        reg.partial_fit(seqs, np.stack([y, y], axis=1))


def test_warm_start_continues(rng):
    seqs, y = _sequences(rng)
    cold = _quick(RNNRegressor, epochs=2, n_iter_no_change=50).fit(seqs, y)
    warm = _quick(RNNRegressor, epochs=2, n_iter_no_change=50, warm_start=True).fit(seqs, y)
    _same_weights(cold, warm)
    before = _weights(warm)["0.weight_ih_l0"].copy()
    warm.fit(seqs, y)
    assert warm.n_iter_ == 4 and len(warm.history_["loss"]) == 4
    assert not np.array_equal(before, _weights(warm)["0.weight_ih_l0"])
    assert warm.history_["loss"][2] < warm.history_["loss"][0]
    warm.set_params(learning_rate=1e-4)  # a new optimizer, the same network
    warm.fit(seqs, y)
    assert warm.model_.optimizer.lr == 1e-4
    assert warm.partial_fit(seqs, y).n_iter_ == 7  # partial_fit goes on after fit
    warm.set_params(hidden_size=7)
    with pytest.raises(ValueError, match="hidden_size: changed from 6 to 7"):
        warm.fit(seqs, y)
    with pytest.raises(ValueError, match="hidden_size: changed from 6 to 7"):
        warm.partial_fit(seqs, y)
    assert warm.n_iter_ == 7
    warm.set_params(warm_start=False)
    assert warm.fit(seqs, y).n_iter_ == 2  # a new network
    clf = _quick(RNNClassifier, warm_start=True).fit(seqs, y > 0)
    with pytest.raises(ValueError, match="not among the classes"):
        clf.fit(seqs, np.where(y > 0, 2, 0))


def test_early_stopping_restores_the_best_weights(rng):
    """Training past the best validation loss, then the best epoch's
    weights back: the same bits as a run that stopped at that epoch."""
    X = rng.normal(size=(60, 5, 2))
    y = rng.normal(size=60)  # noise: the validation loss soon rises
    kw = dict(hidden_size=16, early_stopping=True, validation_fraction=0.25,
              learning_rate=3e-2, n_iter_no_change=4, random_state=3)
    a = RNNRegressor(epochs=40, **kw).fit(X, y)
    best = a.best_epoch_
    assert best is not None and best < a.n_iter_ - 1
    assert a.best_validation_loss_ == min(a.history_["val_loss"])
    assert a.history_["val_loss"][best] == a.best_validation_loss_
    b = RNNRegressor(epochs=best + 1, **{**kw, "n_iter_no_change": 100}).fit(X, y)
    assert b.n_iter_ == best + 1
    _same_weights(a, b)


def test_stops_when_the_training_loss_stalls(rng):
    X = rng.normal(size=(20, 4, 1))
    y = np.zeros(20)  # nothing to learn: the loss is flat
    reg = RNNRegressor(hidden_size=4, epochs=100, n_iter_no_change=3, tol=1e-3,
                       random_state=0).fit(X, y)
    assert reg.n_iter_ < 100 and reg.best_epoch_ is None


# ---- scikit-learn's machinery -------------------------------------------------------
def _worker_fastrnn():
    import fastrnn
    return fastrnn.__file__


def test_pipeline_and_grid_search_in_two_processes(rng):
    """Pipeline (a scaler per time step, then the classifier) and
    GridSearchCV(n_jobs=2): the estimators are cloned and pickled into loky's
    worker processes, which take this process's sys.path and so import the
    same fastrnn (checked first)."""
    from joblib import Parallel, delayed
    where = Parallel(n_jobs=2)(delayed(_worker_fastrnn)() for _ in range(2))
    assert where == [fr.__file__] * 2, (where, fr.__file__)
    X = rng.normal(size=(48, 6)) * 10 + 3
    y = np.where(X[:, -1] > 3, "hi", "lo")
    pipe = make_pipeline(StandardScaler(), _quick(RNNClassifier, epochs=15,
                                                  learning_rate=2e-2))
    grid = GridSearchCV(pipe, {"rnnclassifier__cell": ["gru", "lstm"],
                               "rnnclassifier__hidden_size": [4, 8]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"rnnclassifier__cell", "rnnclassifier__hidden_size"}
    assert grid.best_score_ > 0.6
    assert grid.predict(X).shape == (48,)
    # the refit best pipeline round-trips through pickle with the same output
    back = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(back.predict_proba(X), grid.predict_proba(X))


# ---- errors ------------------------------------------------------------------------
@pytest.mark.parametrize("param,value,exc", [
    ("cell", "transformer", ValueError), ("hidden_size", 0, ValueError),
    ("hidden_size", 2.5, TypeError), ("pooling", "sum", ValueError),
    ("dropout", 1.0, ValueError), ("epochs", 0, ValueError), ("batch_size", -1, ValueError),
    ("optimizer", "lbfgs", ValueError), ("learning_rate", 0.0, ValueError),
    ("weight_decay", -1e-3, ValueError), ("clip_norm", 0, ValueError),
    ("validation_fraction", 1.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("tol", -1.0, ValueError), ("warm_start", "yes", TypeError), ("verbose", 3, ValueError),
    ("dtype", "float16", ValueError), ("bidirectional", 1, TypeError),
])
def test_bad_parameters_named(param, value, exc):
    X = np.zeros((4, 3, 1))
    est = RNNClassifier(**{param: value})  # __init__ checks nothing, as sklearn asks
    with pytest.raises(exc, match=rf"^{param}: expected"):
        est.fit(X, [0, 1, 0, 1])


def test_bad_inputs_named(rng):
    clf = _quick(RNNClassifier, epochs=1).fit(rng.normal(size=(6, 4, 2)), [0, 1] * 3)
    with pytest.raises(ValueError, match="Reshape your data"):
        clf.predict(np.zeros(4))
    with pytest.raises(ValueError, match=r"X: expected sequences .* 4-D"):
        clf.predict(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"X has 3 features per step, but RNNClassifier is "
                                         r"expecting 2"):
        clf.predict(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"X\[1\]: expected 2 features per step"):
        clf.predict([np.zeros((3, 2)), np.zeros((5, 3))])
    with pytest.raises(ValueError, match=r"X\[1\]"):
        clf.predict([np.zeros((3, 2)), np.zeros((0, 2))])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict([np.zeros((3, 2)), np.full((4, 2), np.nan)])
    with pytest.raises(ValueError, match="at least 1 step"):
        clf.predict(np.zeros((2, 0, 2)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _quick(RNNClassifier).fit(np.zeros((5, 3)), [0, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        _quick(RNNClassifier).fit(np.zeros((5, 3)), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="validation_fraction: 0.1 of 1 samples"):
        _quick(RNNRegressor, early_stopping=True).fit(np.zeros((1, 3)), [1.0])
    with pytest.raises(ValueError, match="y: .*requires y"):
        _quick(RNNRegressor).fit(np.zeros((3, 3)), None)


# ---- packaging and documentation ------------------------------------------------------
def test_import_fastrnn_does_not_import_sklearn():
    code = "import sys, fastrnn; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(fr.__file__).parents[1],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for obj in (RNNClassifier, RNNRegressor) for t in finder.find(obj, module=frsk)
             if t.examples]
    assert len(tests) >= 8  # both classes and their fit, partial_fit, predict(_proba)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in tests:
            runner.run(t)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed"


def test_docs_example_runs():
    doc = ROOT / "docs" / "sklearn.md"
    if not doc.is_file():
        pytest.skip("not run from a source checkout")
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks, "docs/sklearn.md has no python example"
    exec(compile(blocks[0], str(doc), "exec"), {"__name__": "docs_sklearn"})
