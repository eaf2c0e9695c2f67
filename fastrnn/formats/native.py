"""Model files: data only, never code.

A model file is a ZIP archive holding
    config.json            the model: format version, layer classes and their
                           constructor arguments, compile settings, and the
                           name, dtype and shape of every array below
    arrays/<name>.npy      one NumPy array each (weights; optimizer state under
                           arrays/optimizer/...), written without pickles

fr.load reads it without running anything from it: layer classes come from a
table of fastrnn's classes and those registered in this process with
fr.register_layer (by name; never an import from the file), arrays are parsed
from their .npy headers with a dtype whitelist (no object arrays, no
pickles), names, shapes and dtypes must agree with the config, and no layer
is built whose config asks for more parameters than
the file holds (a few bytes of JSON cannot make it allocate gigabytes).
No zip bombs: every member's size in the archive, then the total the config
declares, is checked against the load cap (max_bytes=, else
fr.formats.get_load_limit(), 1 GiB) before any array is read; a large member
that inflates more than _MAX_RATIO times is refused; no read goes past a
declared size, and each array is read once, into its own buffer.
fr.save writes through an exclusive temporary file renamed into place: a
failed save leaves nothing behind and an existing file as it was.
Anything else, a damaged archive included, gets a ValueError saying what is
wrong.
"""
import io
import json
import math
import re
import struct
import zipfile
import zlib

import numpy as np

from .._cells import num_gates
from .._version import __version__
from ..layers import layer_classes
from .. import losses, optim
from .. import regularized  # noqa: F401 - its layers (and recurrent's) register on import
from ..model import Sequential
from ..seq2seq import Seq2Seq
from ._files import (atomic_write, check_bytes, max_bytes as _max_bytes, open_regular,
                     open_source)

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_MAX_CONFIG = 16 << 20          # bytes of config.json
_MAX_MEMBERS = 100_000
_NPY_HEADER = 4096              # bytes a member may hold beyond its array data
# fr.save stores members uncompressed and trained weights barely deflate; only
# long runs of one byte near deflate's 1032:1 ceiling inflate this much, so a
# large member past this ratio is a zip bomb (the cap alone would still let
# it cost max_bytes)
_MAX_RATIO = 200
_RATIO_FLOOR = 16 << 20         # members smaller than this skip the ratio check
_CHUNK = 1 << 20                # bytes per read into an array (no second copy)
# int8 and uint16: the weights of int8 and bf16 frozen layers
_DTYPES = {"float32", "float64", "int64", "int32", "bool", "int8", "uint16"}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
# What a damaged archive raises from zipfile/json besides ValueError: a bad CRC
# or local header (BadZipFile), a member cut short (EOFError), a flipped
# compression-method field (NotImplementedError), a corrupt deflate stream
# (zlib.error), a short header (struct.error), JSON nested too deep
# (RecursionError). fr.load turns each into its ValueError.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
                   NotImplementedError, RecursionError, zlib.error, struct.error)


# The layer classes a file may name (never an import from the file): a live
# view of the core's table, fastrnn's own layers and those given to
# fr.register_layer in this process (fastrnn.layers.register_layer).
_LAYERS = layer_classes()


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def save(model, path, include_optimizer=True):
    """Write a model to one data-only file: config, weights and optionally the optimizer state.

    A ZIP of ``config.json`` and ``.npy`` arrays (see the module docstring);
    `load` reads it back. ``model.save(path)`` is the same call.

    Parameters
    ----------
    model : Sequential
        The model.
    path : str or os.PathLike
        The file to write (replaced atomically).
    include_optimizer : bool, default True
        Also save the optimizer's state (and the loss, clipping and metrics).

    Examples
    --------
    >>> import fastrnn as fr
    >>> model = fr.Sequential([fr.GRU(3, 4, batch_first=True), fr.Dense(4, 2)], seed=0)
    >>> fr.save(model, "gru.fastrnn")
    >>> loaded = fr.load("gru.fastrnn")
    >>> [type(l).__name__ for l in loaded.layers]
    ['GRU', 'Dense']
    """
    if isinstance(model, Seq2Seq):
        _save_seq2seq(model, path, include_optimizer)
        return
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected an fr.Sequential or fr.Seq2Seq, got "
                        f"{type(model).__name__}")
    table = _LAYERS
    layers_cfg = []
    for i, l in enumerate(model.layers):
        name = type(l).__name__
        if table.get(name) is not type(l):
            raise TypeError(f"layer {i}: {name} is not a fastrnn layer class that files "
                            f"can hold (register it first: fr.register_layer({name}))")
        item = {"class": name, "config": l.get_config()}
        if getattr(l, "weights_precision", "float32") != "float32":
            item["weights"] = l.weights_precision
        layers_cfg.append(item)
    arrays = {f"model/{n}": p for n, p in model.state_dict().items()}
    for i, l in enumerate(model.layers):
        # a frozen int8/bf16 layer: its narrow weights (and int8 row scales) in
        # place of their float32 values, "model/{i}.weight_..." as int8/uint16
        if getattr(l, "weights_precision", "float32") != "float32":
            for n, a in l._qweights.items():
                arrays[f"model/{i}.{n}"] = a
    compile_cfg = None
    if model.loss is not None:
        compile_cfg = {"loss": {"name": model.loss.name, "config": model.loss.get_config()},
                       "clip_norm": model.clip_norm, "metrics": list(model.metrics)}
        if getattr(model, "sharding", None):  # fit(shards=K): resume with the same K
            compile_cfg["sharding"] = dict(model.sharding)
        opt = model.optimizer
        if opt is not None:
            compile_cfg["optimizer"] = _optimizer_entry(opt, include_optimizer, arrays)
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastrnn_version": __version__,
        "model": "Sequential", "dtype": model.dtype.name, "seed": model.seed,
        "layers": layers_cfg, "compile": compile_cfg,
        "arrays": {k: {"dtype": np.asarray(v).dtype.name, "shape": list(np.shape(v))}
                   for k, v in arrays.items()},
    }
    _write(path, config, arrays)


def _optimizer_entry(opt, include_optimizer, arrays):
    """The config of an attached optimizer, its state arrays put into `arrays`."""
    entry = {"class": type(opt).__name__, "config": opt.get_config(), "state": None}
    if include_optimizer:
        ocfg, oarr = opt.state_dict()
        entry["state"] = ocfg
        for k, v in oarr.items():
            arrays[f"optimizer/{k}"] = np.asarray(v)
    return entry


def _save_seq2seq(model, path, include_optimizer):
    arrays = {f"model/{n}": p for n, p in model.params.items()}
    comp = None
    if model.optimizer is not None:
        comp = {"clip_norm": model.clip_norm,
                "optimizer": _optimizer_entry(model.optimizer, include_optimizer, arrays)}
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastrnn_version": __version__,
        "model": "Seq2Seq", "seq2seq": model.get_config(), "compile": comp,
        "arrays": {k: {"dtype": np.asarray(v).dtype.name, "shape": list(np.shape(v))}
                   for k, v in arrays.items()},
    }
    _write(path, config, arrays)


def _load_seq2seq(config, arrays, shown):
    """A Seq2Seq from its file: sizes checked against the arrays before any
    allocation, weights loaded, the optimizer re-attached with its state."""
    cfg = config["seq2seq"]
    if not all(isinstance(k, str) and k.isidentifier() for k in cfg):
        _fail(shown, "seq2seq: bad argument names in its config")
    probe = Seq2Seq.__new__(Seq2Seq)
    try:
        probe._configure(**cfg)
    except (TypeError, ValueError) as e:
        _fail(shown, f"seq2seq: bad config: {e}")
    weights = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    want = probe.parameter_shapes()
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        _fail(shown, f"seq2seq: the arrays do not match the config (first differences: "
                     f"{diff})")
    model = Seq2Seq(**cfg)
    model.load_state_dict(weights)
    comp = config.get("compile")
    if comp is not None:
        _fields(comp, "compile", ("clip_norm", "optimizer"), ("optimizer",), shown)
        ocfg = _fields(comp["optimizer"], "compile.optimizer", ("class", "config", "state"),
                       ("class", "config"), shown)
        if not isinstance(ocfg["class"], str):
            _fail(shown, "compile.optimizer.class: expected a string")
        okw = _kwargs(ocfg["config"], "compile.optimizer.config", shown)
        clip = comp.get("clip_norm")
        try:
            model.compile(optim.get(ocfg["class"].lower(), **okw), clip_norm=clip)
            if ocfg.get("state") is not None:
                oarr = {k[len("optimizer/"):]: v for k, v in arrays.items()
                        if k.startswith("optimizer/")}
                model.optimizer.load_state_dict(ocfg["state"], oarr)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            _fail(shown, f"compile: {type(e).__name__}: {e}")
    return model


def _write(path, config, arrays):
    for k in arrays:
        if not all(_NAME.match(part) for part in k.split("/")):
            raise ValueError(f"array name {k!r} cannot be stored")
    # a unique exclusive temporary file renamed over `path` when complete: a
    # failed save (full disk, a directory at `path`) leaves nothing behind and
    # the old file intact, and a planted PATH.tmp symlink is never followed
    with atomic_write(path, "fr.save") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("config.json", json.dumps(config, indent=1, allow_nan=True))
            for k, v in arrays.items():
                zf.writestr(f"arrays/{k}.npy", _npy_bytes(v))


def _fail(path, why):
    raise ValueError(f"fr.load({path!r}): {why}")


def _spec_bytes(name, spec, path):
    """(dtype, shape, data bytes) of one array spec of the config, checked."""
    if not isinstance(spec, dict):
        _fail(path, f"array spec of {name!r} is not an object")
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if not isinstance(dtype, str) or dtype not in _DTYPES or not isinstance(shape, list) or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40
                    for s in shape):
        _fail(path, f"arrays/{name}.npy: bad dtype/shape in config ({dtype!r}, {shape!r})")
    return dtype, shape, math.prod(shape) * np.dtype(dtype).itemsize


def _read_array(zf, info, dtype, shape, nbytes, path):
    """Parse one .npy member checked against its spec, without pickles,
    reading no more than the header and the declared data."""
    if info.file_size > nbytes + _NPY_HEADER:
        _fail(path, f"{info.filename}: {info.file_size} bytes, more than a {dtype} array "
                    f"of shape {tuple(shape)} needs")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy version {version}")
        except _ARCHIVE_ERRORS:
            raise  # a damaged archive: load reports it as such
        except Exception as e:  # noqa: BLE001 - any malformed header is refused alike
            _fail(path, f"{info.filename}: not a valid .npy array ({e})")
        if hdtype.hasobject or hdtype.name not in _DTYPES:
            _fail(path, f"{info.filename}: dtype {hdtype} is not allowed")
        if hdtype.name != dtype or list(hshape) != shape or fortran:
            _fail(path, f"{info.filename}: array is {hdtype.name} {tuple(hshape)}"
                        f"{' (Fortran order)' if fortran else ''}, config says {dtype} "
                        f"{tuple(shape)}")
        out = np.empty(shape, dtype=hdtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = 0
        while got < nbytes:
            n = f.readinto(view[got:got + _CHUNK])
            if not n:
                _fail(path, f"{info.filename}: truncated ({got} of {nbytes} data bytes)")
            got += n
        if f.read(1):
            _fail(path, f"{info.filename}: larger than its header says")
    return out


def _check_member(info, cap, who, path):
    """A member's own sizes from the central directory, before it is opened."""
    check_bytes(info.file_size, cap, f"member {info.filename}", who)
    if info.file_size > _RATIO_FLOOR and \
            info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        _fail(path, f"member {info.filename} is compressed {info.file_size} bytes into "
                    f"{info.compress_size} (more than {_MAX_RATIO} times over): a zip "
                    "bomb, not a model file (fr.save stores members uncompressed)")


def _read_archive(src, shown, cap):
    """(config, arrays) of a model file, every member checked (see load):
    each member's size against the cap, then the config read, then the total
    it declares against the cap, all before any array is read."""
    who = f"fr.load({shown!r})"
    try:
        zf = zipfile.ZipFile(src, "r")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        _fail(shown, f"not a fastrnn model file (not a readable ZIP archive: {e})")
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            _fail(shown, f"{len(infos)} members, too many")
        by_name = {}
        for info in infos:
            n = info.filename
            if n in by_name:
                _fail(shown, f"member {n!r} appears twice")
            if n.startswith("/") or "\\" in n or ".." in n.split("/") or \
                    not (n == "config.json" or (n.startswith("arrays/") and n.endswith(".npy"))):
                _fail(shown, f"unexpected member {n!r} (only config.json and arrays/*.npy)")
            if info.flag_bits & 0x1:
                _fail(shown, f"member {n!r} is encrypted")
            _check_member(info, cap, who, shown)
            by_name[n] = info
        if "config.json" not in by_name:
            _fail(shown, "no config.json inside (not a fastrnn model file)")
        cinfo = by_name["config.json"]
        if cinfo.file_size > _MAX_CONFIG:
            _fail(shown, f"config.json is {cinfo.file_size} bytes, more than {_MAX_CONFIG}")
        with zf.open(cinfo) as f:
            raw = f.read(cinfo.file_size + 1)   # never past the size it declares
        if len(raw) > cinfo.file_size:
            _fail(shown, "config.json is larger than the archive says")
        try:
            config = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            _fail(shown, f"config.json is not valid JSON ({type(e).__name__}: {e})")
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            _fail(shown, "config.json does not describe a fastrnn model")
        ver = config.get("format_version")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            _fail(shown, f"bad format_version {ver!r}")
        if ver > FORMAT_VERSION:
            _fail(shown, f"file format version {ver} is newer than this fastrnn "
                         f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade fastrnn")
        specs = config.get("arrays")
        if config.get("model") == "Seq2Seq":
            if not isinstance(specs, dict) or not isinstance(config.get("seq2seq"), dict):
                _fail(shown, "config.json lacks 'arrays' or 'seq2seq'")
        else:
            layers_cfg = config.get("layers")
            if not isinstance(specs, dict) or not isinstance(layers_cfg, list) or \
                    not layers_cfg:
                _fail(shown, "config.json lacks 'arrays' or 'layers'")
        expected = {f"arrays/{k}.npy" for k in specs}
        members = set(by_name) - {"config.json"}
        if expected != members:
            miss = sorted(expected - members)
            extra = sorted(members - expected)
            _fail(shown, "arrays do not match the config"
                  + (f"; missing {miss}" if miss else "") + (f"; unexpected {extra}" if extra else ""))
        checked = {k: _spec_bytes(k, spec, shown) for k, spec in specs.items()}
        total = cinfo.file_size + sum(nbytes for _, _, nbytes in checked.values())
        check_bytes(total, cap, f"the file (config.json and the {len(checked)} arrays "
                                f"it declares)", who)
        arrays = {}
        for k, (dtype, shape, nbytes) in checked.items():
            arrays[k] = _read_array(zf, by_name[f"arrays/{k}.npy"], dtype, shape, nbytes,
                                    shown)
    return config, arrays


def _size_arg(cfg, name, default=None):
    """A size argument of a layer config when it is a plain int, else None (the
    constructor then reports the bad value itself)."""
    v = cfg.get(name)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v


def _min_params(cls_name, cfg):
    """A lower bound of the parameter count (elements) that a layer built
    from `cfg` allocates, without building it; None when unknown."""
    if cls_name in ("RNN", "LSTM", "GRU", "LayerNormLSTM"):
        I, H, L = (_size_arg(cfg, k, d) for k, d in
                   (("input_size", None), ("hidden_size", None), ("num_layers", 1)))
        if I is None or H is None or L is None or min(I, H, L) < 1:
            return None
        G = num_gates(cls_name)
        D = 2 if cfg.get("bidirectional") is True else 1
        # an LSTM with proj_size P: h has P units (a bad P is the constructor's to refuse)
        P = _size_arg(cfg, "proj_size", 0)
        P = P if P is not None and 0 < P < H else 0
        Hr = P or H
        # weight_ih of layer 0, weight_ih of layers above, weight_hh of all, weight_hr
        return D * (G * H * (I + (L - 1) * D * Hr + L * Hr) + L * P * H)
    sizes = {"Dense": ("in_features", "out_features"),
             "Embedding": ("num_embeddings", "embedding_dim"),
             "AttentionPooling": ("input_size", "attention_size")}.get(cls_name)
    if sizes is None:
        return None
    a = _size_arg(cfg, sizes[0])
    b = _size_arg(cfg, sizes[1], a if cls_name == "AttentionPooling" else None)
    if a is None or b is None or min(a, b) < 1:
        return None
    return a * b


def _check_sizes(layers_cfg, arrays, shown):
    """Refuse a config whose layers would allocate more parameters than the
    file holds for them, before any layer is built: a few bytes of JSON
    (hidden_size=10**6) must not make fr.load allocate gigabytes. Every
    parameter has to be in the file anyway (load_state_dict checks that)."""
    held = {}
    for k, v in arrays.items():
        head, _, rest = k.partition("/")
        idx = rest.partition(".")[0]
        if head == "model" and idx.isdigit():
            held[int(idx)] = held.get(int(idx), 0) + int(v.size)
    for i, item in enumerate(layers_cfg):
        if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
            continue  # reported when the layers are built
        if not isinstance(item.get("class"), str):
            continue  # reported when the layers are built
        need = _min_params(item["class"], item["config"])
        if need is not None and need > held.get(i, 0):
            _fail(shown, f"layer {i} ({item.get('class')}): its config needs at least "
                         f"{need} parameters, the file holds {held.get(i, 0)}")


def _fields(value, field, keys, required, shown):
    """`value` checked to be a dict with only `keys`, `required` among them."""
    if not isinstance(value, dict):
        _fail(shown, f"{field}: expected an object, got {type(value).__name__} {value!r:.80}")
    extra = sorted(str(k) for k in value if k not in keys)
    if extra:
        _fail(shown, f"{field}: unexpected entries {extra} (known: {sorted(keys)})")
    for k in required:
        if k not in value:
            _fail(shown, f"{field}.{k}: missing")
    return value


def _kwargs(value, field, shown):
    """A constructor's keyword arguments from the file: an object of names."""
    if not isinstance(value, dict):
        _fail(shown, f"{field}: expected an object of arguments, got "
                     f"{type(value).__name__} {value!r:.80}")
    bad = [k for k in value if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        _fail(shown, f"{field}: bad argument names {bad[:5]!r}")
    return value


def _compile(model, comp, arrays, shown):
    """Compile `model` as the file's compile section says, each field checked
    for its structure first, so that an error names the field."""
    _fields(comp, "compile", ("loss", "clip_norm", "metrics", "optimizer", "sharding"),
            ("loss",), shown)
    lcfg = _fields(comp["loss"], "compile.loss", ("name", "config"), ("name",), shown)
    if not isinstance(lcfg["name"], str):
        _fail(shown, f"compile.loss.name: expected a string, got {lcfg['name']!r:.80}")
    lkw = _kwargs(lcfg.get("config", {}), "compile.loss.config", shown)
    clip = comp.get("clip_norm")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))):
        _fail(shown, f"compile.clip_norm: expected a number or null, got {clip!r:.80}")
    metrics = comp.get("metrics")
    if metrics is None:
        metrics = []
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        _fail(shown, f"compile.metrics: expected a list of names, got {metrics!r:.80}")
    ocfg = comp.get("optimizer")
    if ocfg is not None:
        _fields(ocfg, "compile.optimizer", ("class", "config", "state"), ("class", "config"),
                shown)
        if not isinstance(ocfg["class"], str):
            _fail(shown, f"compile.optimizer.class: expected a string, got "
                         f"{ocfg['class']!r:.80}")
        okw = _kwargs(ocfg["config"], "compile.optimizer.config", shown)
        if ocfg.get("state") is not None and not isinstance(ocfg["state"], dict):
            _fail(shown, f"compile.optimizer.state: expected an object or null, got "
                         f"{ocfg['state']!r:.80}")
    sharding = comp.get("sharding")
    if sharding is not None:
        _fields(sharding, "compile.sharding", ("shards", "batch_size"),
                ("shards", "batch_size"), shown)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in sharding.values()):
            _fail(shown, f"compile.sharding: expected ints >= 1, got {sharding!r:.80}")
    try:
        loss = losses.get(lcfg["name"], **lkw)
    except (TypeError, ValueError) as e:
        _fail(shown, f"compile.loss: {e}")
    opt = "adam"
    if ocfg is not None:
        try:
            opt = optim.get(ocfg["class"].lower(), **okw)
        except (TypeError, ValueError) as e:
            _fail(shown, f"compile.optimizer: {e}")
    try:
        model.compile(loss=loss, optimizer=opt, clip_norm=clip, metrics=metrics)
    except (TypeError, ValueError) as e:
        _fail(shown, f"compile: {e}")
    if sharding is not None:
        model.sharding = {"shards": sharding["shards"], "batch_size": sharding["batch_size"]}
    if ocfg is not None and ocfg.get("state") is not None:
        oarr = {k[len("optimizer/"):]: v for k, v in arrays.items()
                if k.startswith("optimizer/")}
        try:
            model.optimizer.load_state_dict(ocfg["state"], oarr)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            _fail(shown, f"compile.optimizer.state: {type(e).__name__}: {e}")


def _narrow_weights(layers_cfg, layers, weights, shown):
    """{layer index: (precision, narrow arrays)} of the int8/bf16 frozen layers,
    taken out of `weights` (which gets their float32 values in their place,
    so that load_state_dict checks every name and shape as usual)."""
    out = {}
    for i, item in enumerate(layers_cfg):
        precision = item.get("weights", "float32")
        if precision == "float32":
            continue
        if precision not in ("int8", "bf16"):
            _fail(shown, f"layer {i}: unknown weights precision {precision!r} "
                         f"(expected 'int8' or 'bf16')")
        if not hasattr(layers[i], "_freeze_narrow"):
            _fail(shown, f"layer {i} ({type(layers[i]).__name__}): {precision} weights "
                         f"are only for RNN, LSTM and GRU layers")
        want = np.dtype(np.int8) if precision == "int8" else np.dtype(np.uint16)
        q = {}
        for key in [k for k in weights if k.startswith(f"{i}.weight_")]:
            name = key[len(f"{i}."):]
            a = weights.pop(key)
            if name.endswith(".scale"):
                if precision != "int8" or a.dtype != np.float32 or a.ndim != 1 \
                        or not np.all(np.isfinite(a)) or np.any(a < 0):
                    _fail(shown, f"layer {i}: {name}: expected finite float32 row "
                                 f"scales >= 0 of an int8 layer")
                q[name] = a
                continue
            if a.dtype != want or a.ndim != 2:
                _fail(shown, f"layer {i}: {name}: expected a 2-D {want.name} array of a "
                             f"{precision} layer, got {a.dtype.name} {a.shape}")
            q[name] = a
        for name in [n for n in q if not n.endswith(".scale")]:
            scale = q.get(name + ".scale")
            if precision == "int8" and (scale is None or scale.shape != (q[name].shape[0],)):
                _fail(shown, f"layer {i}: {name}: its row scales are missing or mis-shaped")
            weights[f"{i}.{name}"] = _dequantize(precision, q[name], scale)
        out[i] = (precision, q)
    return out


def _dequantize(precision, q, scale):
    """float32 values of narrow weights (fastrnn._precision's rule)."""
    if precision == "int8":
        return (q.astype(np.float32) * scale[:, None]).astype(np.float32)
    return (q.astype(np.uint32) << 16).view(np.float32)


def load(path, max_bytes=None):
    """Read a model written by `save` (or ``model.save``).

    Never runs code from the file.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        The file, or its bytes.
    max_bytes : int, optional
        The most bytes the load may allocate (default
        ``fr.formats.get_load_limit()``, 1 GiB); a file that needs more is
        refused before its arrays are read.

    Returns
    -------
    Sequential
        The model with its weights (and, when saved, its loss, optimizer state,
        clipping and metrics).

    Raises
    ------
    ValueError
        For a truncated, oversized, pickled, path-tricked or mismatched file,
        or a path that names a directory, FIFO or device.
    FileNotFoundError
        When `path` does not exist.

    Examples
    --------
    >>> import fastrnn as fr
    >>> fr.save(fr.Sequential([fr.Dense(2, 1)]), "dense.fastrnn")
    >>> fr.load("dense.fastrnn").layers[0].params["weight"].shape
    (1, 2)
    """
    cap = _max_bytes(max_bytes, "fr.load: max_bytes")
    src, shown, _ = open_source(path, "fr.load")
    if isinstance(src, str):
        src = open_regular(src, "fr.load")   # checked again on the open file
    try:
        with src:
            config, arrays = _read_archive(src, shown, cap)
    except _ARCHIVE_ERRORS as e:
        _fail(shown, f"damaged archive ({type(e).__name__}: {e})")
    if config.get("model") == "Seq2Seq":
        return _load_seq2seq(config, arrays, shown)
    layers_cfg = config["layers"]
    _check_sizes(layers_cfg, arrays, shown)

    table = _LAYERS
    layers = []
    for i, item in enumerate(layers_cfg):
        if not isinstance(item, dict) or not isinstance(item.get("config"), dict):
            _fail(shown, f"layer {i}: expected {{'class': ..., 'config': {{...}}}}")
        name = item.get("class")
        cls = table.get(name) if isinstance(name, str) else None
        if cls is None:
            _fail(shown, f"layer {i}: unknown layer class {item.get('class')!r}: not "
                         "registered in this process (import the module that defines it "
                         "and call fr.register_layer on the class before fr.load; "
                         f"known: {sorted(table)})")
        cfg = item["config"]
        if not all(isinstance(k, str) and k.isidentifier() for k in cfg):
            _fail(shown, f"layer {i}: bad argument names in its config")
        try:
            layers.append(cls(**cfg))
        except (TypeError, ValueError) as e:
            _fail(shown, f"layer {i} ({cls.__name__}): bad config: {e}")
    try:
        model = Sequential(layers)
    except (TypeError, ValueError) as e:
        _fail(shown, f"bad model: {e}")
    weights = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    narrow = _narrow_weights(layers_cfg, layers, weights, shown)
    try:
        model.load_state_dict(weights)
    except (TypeError, ValueError) as e:
        _fail(shown, f"weights do not fit the layers: {e}")
    for i, (precision, q) in narrow.items():
        try:
            model.layers[i] = model.layers[i]._freeze_narrow(precision, q)
        except (TypeError, ValueError) as e:
            _fail(shown, f"layer {i}: cannot freeze with its {precision} weights: {e}")
    comp = config.get("compile")
    if comp is not None:
        _compile(model, comp, arrays, shown)
    return model

