"""Streaming inference for many concurrent streams: `StreamSession`.

A server that embeds fastrnn keeps one recurrent state per open stream
(a user's audio, a chat, a sensor) and advances any subset of them by one
step when their next inputs arrive. A session keeps those states in arrays
allocated once, one row per stream slot, and steps the streams of a push as
one batch: it gathers their rows, runs one ``step`` through the layers and
scatters the new states back. docs/streaming.md walks through it.
"""
import contextlib
import numbers
import threading

import numpy as np

from . import batch_invariant as _batch_invariant
from ._validate import numeric_array, positive_int, real_array, to_numpy
from .layers import Dense, Embedding, Layer
from .model import Sequential
from .recurrent import RNNBase

#: the version of the data `StreamSession.export` writes and
#: `StreamSession.import_state` reads
STATE_VERSION = 1


def _stack_of(model):
    """The layers a session steps, as a list, from a layer, a sequence of
    layers or a Sequential; errors name the argument `model`."""
    if isinstance(model, Sequential):
        layers = list(model.layers)
        if not layers:
            raise ValueError("model: this Sequential has no layers")
    elif isinstance(model, Layer):
        layers = [model]
    elif isinstance(model, (list, tuple)):
        layers = list(model)
        if not layers:
            raise ValueError("model: expected at least one layer, got an empty sequence")
    else:
        raise TypeError(f"model: expected a recurrent layer, a list of layers or a "
                        f"fr.Sequential, got {type(model).__name__}")
    for i, l in enumerate(layers):
        where = f"model: layer {i} ({type(l).__name__})"
        if not isinstance(l, Layer):
            raise TypeError(f"{where} is not a fr.Layer")
        if l.reduces_sequence:
            raise ValueError(f"{where} pools over whole sequences; a stream's steps "
                             "arrive one at a time, so it cannot stream")
        if l.carries_state and not isinstance(l, RNNBase):
            raise TypeError(f"{where} carries a state the session does not know the "
                            "shape of; only fastrnn's recurrent layers (RNNBase) can")
        if isinstance(l, RNNBase) and l.bidirectional:
            raise ValueError(f"{where} is bidirectional: its reverse direction reads the "
                             "future of the sequence, which a stream does not have yet")
    return layers


class StreamSession:
    """Streaming inference of one model for up to `capacity` concurrent streams.

    Each open stream has its own recurrent state, kept in arrays allocated
    once: for every recurrent layer, h (and c for an LSTM) of shape
    (num_layers, capacity, hidden_size), one slot per stream on the batch
    axis, the layout ``layer.step`` takes. ``push(ids, x_t)`` advances only
    the given streams: it gathers their slots, runs ONE batched step through
    the layers (``layer.step`` of each, as ``Sequential.step`` does), and
    scatters the new states back; the other streams do not move. A push
    that raises leaves every state as it was.

    The outputs are those of running each stream alone (``step`` with batch
    1) to float rounding; bit for bit where the step kernels give a row the
    same bits whatever batch it is in (docs/streaming.md says where that
    holds today).

    Stream ids are ints that are never reused within a session: after
    ``close(i)``, ``i`` is refused rather than reaching another stream.

    The session reads the layers' weights as they are at each push (train,
    load or freeze them as usual); adding layers to a Sequential after the
    session was made does not change the session, which keeps the layers it
    was given.

    Thread safety: every method holds the session's lock, so one session can
    serve calls from many threads, one at a time (a push is one batched
    kernel call; gathering requests from several threads into one push is
    the caller's choice). Sessions over the same layers may push from
    different threads at once.

    Parameters
    ----------
    model : RNNBase, sequence of Layer, or Sequential
        A unidirectional recurrent layer (``fr.LSTM``, ``fr.GRU``,
        ``fr.RNN``, ``fr.LayerNormLSTM``), a list of layers stepped in
        order (a stack of recurrent layers, maybe with per-step layers such
        as Dense between them), or a Sequential without pooling layers.
    capacity : int
        The most streams open at once (>= 1); the state arrays are allocated
        for this many.
    batch_invariant : bool, default True
        Run each push inside ``fr.batch_invariant()``: a stream's outputs are
        then the same bits whichever other streams share its push, and the
        same as its own batch-1 ``step`` run with the setting on
        (docs/streaming.md). False keeps the process's setting.

    Raises
    ------
    TypeError
        For a model that is none of these, or a layer whose state the
        session cannot hold.
    ValueError
        For a bidirectional layer, a pooling layer, or a capacity < 1.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrnn as fr
    >>> lstm = fr.LSTM(3, 5, seed=0)
    >>> session = fr.StreamSession(lstm, capacity=4)
    >>> a, b = session.open(), session.open()
    >>> y = session.push([a, b], np.ones((2, 3), np.float32))
    >>> y.shape
    (2, 5)
    >>> y = session.push([b], np.zeros((1, 3), np.float32))   # only b moves
    >>> saved = session.export(a)           # a dict of arrays, no pickle
    >>> session.close(a)
    >>> c = session.import_state(saved)     # a continues as c
    >>> len(session), session.capacity
    (2, 4)
    """

    def __init__(self, model, capacity, batch_invariant=True):
        if not isinstance(batch_invariant, bool):
            raise TypeError(f"batch_invariant: expected True or False, got {batch_invariant!r}")
        self.batch_invariant = batch_invariant
        self._capacity = positive_int(capacity, "capacity")
        self._layers = _stack_of(model)
        # per recurrent layer: (index in the stack, layer, [h] or [h, c])
        self._states = []
        for i, l in enumerate(self._layers):
            if not l.carries_state:
                continue
            shape = (l.num_layers, self._capacity, l.hidden_size)
            parts = [np.zeros(shape, l.dtype) for _ in range(2 if l._is_lstm else 1)]
            self._states.append((i, l, parts))
        self._slot_of = {}              # stream id -> slot (row of the state arrays)
        self._free = list(range(self._capacity - 1, -1, -1))  # pop() gives the lowest
        self._next_id = 0
        self._lock = threading.Lock()

    # ---- streams -------------------------------------------------------------
    @property
    def capacity(self):
        """The most streams open at once (int)."""
        return self._capacity

    def __len__(self):
        return len(self._slot_of)

    def __contains__(self, stream_id):
        return self._is_id(stream_id) and int(stream_id) in self._slot_of

    def ids(self):
        """Return the ids of the open streams.

        Returns
        -------
        list of int
            In the order they were opened (or imported).
        """
        with self._lock:
            return list(self._slot_of)

    def open(self):
        """Open a stream whose state starts at zero.

        Returns
        -------
        int
            The new stream's id.

        Raises
        ------
        RuntimeError
            When `capacity` streams are open already.
        """
        with self._lock:
            slot = self._take_slot("open")
            return self._bind(slot)

    def close(self, stream_id):
        """Close a stream; its slot serves the next stream opened.

        Parameters
        ----------
        stream_id : int
            An open stream's id.

        Raises
        ------
        ValueError
            For an id that is not open (closed already, or never opened here).
        TypeError
            For an id that is not an int.
        """
        with self._lock:
            slot = self._slot(stream_id, "stream_id")
            del self._slot_of[int(stream_id)]
            self._free.append(slot)

    def reset(self, stream_id):
        """Set a stream's state back to zero, as if it had just been opened.

        Parameters
        ----------
        stream_id : int
            An open stream's id.

        Raises
        ------
        ValueError
            For an id that is not open.
        TypeError
            For an id that is not an int.
        """
        with self._lock:
            self._zero(self._slot(stream_id, "stream_id"))

    # ---- stepping ----------------------------------------------------------------
    def push(self, ids, x_t):
        """Advance the given streams by one step, as one batch.

        Parameters
        ----------
        ids : sequence of int
            The open streams to step, each once; row k of `x_t` is the input
            of stream ``ids[k]``.
        x_t : array_like
            (len(ids), input_size) inputs, or (len(ids),) ids when the model
            starts with an Embedding.

        Returns
        -------
        numpy.ndarray
            (len(ids), ...) the outputs of the step, row k for ``ids[k]``.

        Raises
        ------
        ValueError
            For an id that is not open, an id given twice, no ids, or `x_t`
            of the wrong shape.
        TypeError
            For ids that are not ints, or `x_t` that is not real numbers
            (integers for an Embedding).
        """
        scope = _batch_invariant() if self.batch_invariant else contextlib.nullcontext()
        with self._lock, scope:
            slots = self._slots(ids)
            x = self._input(x_t, len(slots))
            new = []
            k = 0
            for l in self._layers:
                if l.carries_state:
                    _, _, parts = self._states[k]
                    # (num_layers, n, H) each, C-contiguous: the layer's own layout
                    state = [p.take(slots, axis=1) for p in parts]
                    x, st = l.step(x, tuple(state) if len(state) == 2 else state[0])
                    new.append(st)
                    k += 1
                else:
                    x, _ = l.step(x, None)
            # every layer ran: only now do the states move (a push that raised
            # above leaves them as they were)
            for (_, _, parts), st in zip(self._states, new):
                for p, s in zip(parts, st if isinstance(st, tuple) else (st,)):
                    p[:, slots] = s
            return x

    # ---- moving a stream ---------------------------------------------------------
    def export(self, stream_id):
        """Return a stream's state as plain data, to continue it elsewhere.

        The stream stays open. The data is a dict of NumPy arrays (no
        objects: ``np.savez`` and ``np.load(..., allow_pickle=False)`` carry
        it, as do fr.save-like files), continued by `import_state` in a
        session over the same model (same weights) in any process.

        Parameters
        ----------
        stream_id : int
            An open stream's id.

        Returns
        -------
        dict
            ``"version"`` (int, `STATE_VERSION`), ``"layout"`` (str: the
            recurrent layers' cell, num_layers, hidden_size and dtype), and
            ``"state{k}_h"`` (and ``"state{k}_c"`` for an LSTM), copies of
            shape (num_layers, hidden_size), for the k-th recurrent layer.

        Raises
        ------
        ValueError
            For an id that is not open.
        TypeError
            For an id that is not an int.
        """
        with self._lock:
            slot = self._slot(stream_id, "stream_id")
            out = {"version": STATE_VERSION, "layout": self._layout()}
            for k, (_, _, parts) in enumerate(self._states):
                for name, p in zip("hc", parts):
                    out[f"state{k}_{name}"] = p[:, slot].copy()
            return out

    def import_state(self, data):
        """Open a stream that continues from a state `export` returned.

        Parameters
        ----------
        data : mapping
            What `export` returned (a dict, or ``np.load`` of an ``np.savez``
            of it).

        Returns
        -------
        int
            The new stream's id.

        Raises
        ------
        ValueError
            For data of another version or layout (another model), missing
            or unexpected keys, or arrays of the wrong shape.
        TypeError
            For data that is not a mapping of arrays, or arrays not of the
            layer's dtype.
        RuntimeError
            When `capacity` streams are open already.
        """
        arrays = self._check_data(data)
        with self._lock:
            slot = self._take_slot("import_state")
            for (_, _, parts), values in zip(self._states, arrays):
                for p, v in zip(parts, values):
                    p[:, slot] = v
            return self._bind(slot, zero=False)

    # ---- internals ---------------------------------------------------------------
    def _layout(self):
        return ";".join(f"{l.mode}(num_layers={l.num_layers},hidden_size={l.hidden_size},"
                        f"dtype={l.dtype.name})" for _, l, _ in self._states)

    def _take_slot(self, what):
        if not self._free:
            raise RuntimeError(f"{what}: all {self._capacity} streams of this session's "
                               "capacity are open; close one, or make a session with a "
                               "larger capacity")
        return self._free.pop()

    def _bind(self, slot, zero=True):
        if zero:
            self._zero(slot)
        sid = self._next_id
        self._next_id += 1
        self._slot_of[sid] = slot
        return sid

    def _zero(self, slot):
        for _, _, parts in self._states:
            for p in parts:
                p[:, slot] = 0

    @staticmethod
    def _is_id(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))

    def _slot(self, stream_id, name):
        if not self._is_id(stream_id):
            raise TypeError(f"{name}: expected an int stream id, got "
                            f"{type(stream_id).__name__} {stream_id!r}")
        slot = self._slot_of.get(int(stream_id))
        if slot is None:
            raise ValueError(f"{name}: stream {int(stream_id)} is not open in this session "
                             "(closed, or never opened here)")
        return slot

    def _slots(self, ids):
        """The slots of `ids` as an int64 array, every id checked."""
        if self._is_id(ids):
            raise TypeError(f"ids: expected a sequence of stream ids, got the int {ids!r} "
                            f"(pass [{ids!r}] and x_t with one row)")
        arr = to_numpy(ids, "ids")
        if arr.ndim != 1:
            raise ValueError(f"ids: expected a 1-D sequence of stream ids, got shape "
                             f"{arr.shape}")
        if arr.size == 0:
            raise ValueError("ids: expected at least one stream id")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids: expected int stream ids, got dtype {arr.dtype}")
        slot_of = self._slot_of
        slots = np.empty(arr.size, np.int64)
        for k, sid in enumerate(arr.tolist()):
            slot = slot_of.get(sid)
            if slot is None:
                raise ValueError(f"ids: stream {sid} (ids[{k}]) is not open in this "
                                 "session (closed, or never opened here)")
            slots[k] = slot
        if len(set(slots.tolist())) != slots.size:
            seen = set()
            for sid in arr.tolist():
                if sid in seen:
                    raise ValueError(f"ids: stream {sid} is given twice; a push steps "
                                     "each stream once")
                seen.add(sid)
        return slots

    def _input(self, x_t, n):
        """x_t checked against the first layer: (n, features) of its dtype,
        or (n,) ids for an Embedding."""
        first = self._layers[0]
        if isinstance(first, Embedding):
            arr = to_numpy(x_t, "x_t")
            if arr.shape != (n,):
                raise ValueError(f"x_t: expected ({n},) ids, one per stream of ids, got "
                                 f"shape {arr.shape}")
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr) & (arr == np.round(arr))):
                arr = arr.astype(np.int64)
            if arr.dtype.kind not in "iu":
                raise TypeError(f"x_t: expected integer ids for the Embedding, got dtype "
                                f"{arr.dtype}")
            lo, hi = arr.min().item(), arr.max().item()
            if lo < 0 or hi >= first.num_embeddings:
                raise ValueError(f"x_t: ids must lie in 0..{first.num_embeddings - 1} "
                                 f"(num_embeddings={first.num_embeddings}), got min {lo} "
                                 f"and max {hi}")
            return arr.astype(np.int64, copy=False)
        arr = numeric_array(x_t, "x_t")
        width = (first.input_size if isinstance(first, RNNBase)
                 else first.in_features if isinstance(first, Dense) else None)
        if width is not None and arr.shape != (n, width):
            raise ValueError(f"x_t: expected shape ({n}, {width}) (one row per stream of "
                             f"ids, {width} features), got {arr.shape}")
        if arr.ndim < 1 or arr.shape[0] != n:
            raise ValueError(f"x_t: expected {n} rows (one per stream of ids), got shape "
                             f"{arr.shape}")
        return np.ascontiguousarray(real_array(arr, "x_t", first.dtype))

    def _check_data(self, data):
        """The arrays of `data` for each recurrent layer, checked against this
        session's layers before any slot is taken."""
        if not (hasattr(data, "keys") and hasattr(data, "__getitem__")):
            raise TypeError(f"data: expected the dict StreamSession.export returns, got "
                            f"{type(data).__name__}")
        keys = set(data.keys())
        want = {"version", "layout"}
        for k, (_, _, parts) in enumerate(self._states):
            want.update(f"state{k}_{name}" for name in "hc"[:len(parts)])
        if "version" not in keys:
            raise ValueError("data: no 'version' key; expected what StreamSession.export "
                             "returns")
        version = np.asarray(data["version"])
        if version.shape != () or version.dtype.kind not in "iu":
            raise TypeError(f"data['version']: expected an int, got {data['version']!r}")
        if int(version) != STATE_VERSION:
            raise ValueError(f"data['version']: this fastrnn reads stream states of version "
                             f"{STATE_VERSION}, got {int(version)}")
        missing, extra = sorted(want - keys), sorted(keys - want)
        if missing or extra:
            raise ValueError(f"data: missing keys {missing}, unexpected keys {extra} "
                             "(a state exported from another model?)")
        layout = np.asarray(data["layout"])
        if layout.shape != () or layout.dtype.kind != "U":
            raise TypeError(f"data['layout']: expected a str, got {data['layout']!r}")
        if str(layout) != self._layout():
            raise ValueError(f"data['layout']: the state is of {str(layout)!r}, this "
                             f"session's layers are {self._layout()!r}")
        out = []
        for k, (_, l, parts) in enumerate(self._states):
            values = []
            for name in "hc"[:len(parts)]:
                key = f"state{k}_{name}"
                a = to_numpy(data[key], f"data[{key!r}]")
                if a.dtype != l.dtype:
                    raise TypeError(f"data[{key!r}]: expected dtype {l.dtype.name} (the "
                                    f"layer's), got {a.dtype}")
                shape = (l.num_layers, l.hidden_size)
                if a.shape != shape:
                    raise ValueError(f"data[{key!r}]: expected shape {shape} (num_layers, "
                                     f"hidden_size), got {a.shape}")
                values.append(a)
            out.append(values)
        return out
