"""Model files: data only, never code.

A model file is a ZIP archive holding
    config.json            the model: format version, layer classes and their
                           constructor arguments, compile settings, and the
                           name, dtype and shape of every array below
    arrays/<name>.npy      one NumPy array each (weights; optimizer state under
                           arrays/optimizer/...), written without pickles

fr.load reads it without running anything from it: layer classes come from a
table of fastrnn's classes and those registered in this process with
fr.register_layer (by name; never an import from the file), arrays are parsed from their .npy headers with
a dtype whitelist (no object arrays, no pickles), every member is size-checked
before it is read (no zip bombs), names, shapes and dtypes must agree with
the config, and no layer is built whose config asks for more parameters than
the file holds (a few bytes of JSON cannot make it allocate gigabytes).
Anything else, a damaged archive included, gets a ValueError saying what is
wrong.
"""
import io
import json
import math
import os
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

FORMAT = "fastrnn-model"
FORMAT_VERSION = 1
_MAX_CONFIG = 16 << 20          # bytes of config.json
_MAX_MEMBERS = 100_000
_DTYPES = {"float32", "float64", "int64", "int32", "bool"}
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
    """Write `model` (an fr.Sequential: config, weights and, with
    include_optimizer, the optimizer state) to `path` as one data-only file
    (see the module docstring); fr.load reads it back. model.save(path) is
    the same call."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected an fr.Sequential, got {type(model).__name__}")
    table = _LAYERS
    layers_cfg = []
    for i, l in enumerate(model.layers):
        name = type(l).__name__
        if table.get(name) is not type(l):
            raise TypeError(f"layer {i}: {name} is not a fastrnn layer class that files "
                            f"can hold (register it first: fr.register_layer({name}))")
        layers_cfg.append({"class": name, "config": l.get_config()})
    arrays = {f"model/{n}": p for n, p in model.state_dict().items()}
    compile_cfg = None
    if model.loss is not None:
        compile_cfg = {"loss": {"name": model.loss.name, "config": model.loss.get_config()},
                       "clip_norm": model.clip_norm, "metrics": list(model.metrics)}
        opt = model.optimizer
        if opt is not None:
            compile_cfg["optimizer"] = {"class": type(opt).__name__,
                                        "config": opt.get_config(), "state": None}
            if include_optimizer:
                ocfg, oarr = opt.state_dict()
                compile_cfg["optimizer"]["state"] = ocfg
                for k, v in oarr.items():
                    arrays[f"optimizer/{k}"] = np.asarray(v)
    for k in arrays:
        if not all(_NAME.match(part) for part in k.split("/")):
            raise ValueError(f"array name {k!r} cannot be stored")
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastrnn_version": __version__,
        "model": "Sequential", "dtype": model.dtype.name, "seed": model.seed,
        "layers": layers_cfg, "compile": compile_cfg,
        "arrays": {k: {"dtype": np.asarray(v).dtype.name, "shape": list(np.shape(v))}
                   for k, v in arrays.items()},
    }
    path = os.fspath(path)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", json.dumps(config, indent=1, allow_nan=True))
        for k, v in arrays.items():
            zf.writestr(f"arrays/{k}.npy", _npy_bytes(v))
    os.replace(tmp, path)  # a crash mid-write never leaves a half file at `path`


def _fail(path, why):
    raise ValueError(f"fr.load({path!r}): {why}")


def _read_array(zf, info, spec, path):
    """Parse one .npy member checked against its spec, without pickles."""
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if not isinstance(dtype, str) or dtype not in _DTYPES or not isinstance(shape, list) or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40
                    for s in shape):
        _fail(path, f"{info.filename}: bad dtype/shape in config ({dtype!r}, {shape!r})")
    count = math.prod(shape)
    nbytes = count * np.dtype(dtype).itemsize
    if info.file_size > nbytes + 4096:
        _fail(path, f"{info.filename}: {info.file_size} bytes, more than a {dtype} array "
                    f"of shape {tuple(shape)} needs")
    with zf.open(info) as f:
        raw = f.read(nbytes + 4097)
    if len(raw) > nbytes + 4096:
        _fail(path, f"{info.filename}: larger than its header says")
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(buf)
        elif version in ((2, 0), (3, 0)):
            hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy version {version}")
    except Exception as e:  # noqa: BLE001 - any malformed header is refused alike
        _fail(path, f"{info.filename}: not a valid .npy array ({e})")
    if hdtype.hasobject or hdtype.name not in _DTYPES:
        _fail(path, f"{info.filename}: dtype {hdtype} is not allowed")
    if hdtype.name != dtype or list(hshape) != shape or fortran:
        _fail(path, f"{info.filename}: array is {hdtype.name} {tuple(hshape)}"
                    f"{' (Fortran order)' if fortran else ''}, config says {dtype} {tuple(shape)}")
    data = raw[buf.tell():]
    if len(data) != nbytes:
        _fail(path, f"{info.filename}: truncated ({len(data)} of {nbytes} data bytes)")
    return np.frombuffer(data, dtype=hdtype).reshape(shape).copy()


def _read_archive(src, shown):
    """(config, arrays) of a model file, every member checked (see load)."""
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
            by_name[n] = info
        if "config.json" not in by_name:
            _fail(shown, "no config.json inside (not a fastrnn model file)")
        cinfo = by_name["config.json"]
        if cinfo.file_size > _MAX_CONFIG:
            _fail(shown, f"config.json is {cinfo.file_size} bytes, more than {_MAX_CONFIG}")
        try:
            with zf.open(cinfo) as f:
                raw = f.read(_MAX_CONFIG + 1)
            config = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile,
                EOFError, OSError) as e:
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
        layers_cfg = config.get("layers")
        if not isinstance(specs, dict) or not isinstance(layers_cfg, list) or not layers_cfg:
            _fail(shown, "config.json lacks 'arrays' or 'layers'")
        expected = {f"arrays/{k}.npy" for k in specs}
        members = set(by_name) - {"config.json"}
        if expected != members:
            miss = sorted(expected - members)
            extra = sorted(members - expected)
            _fail(shown, "arrays do not match the config"
                  + (f"; missing {miss}" if miss else "") + (f"; unexpected {extra}" if extra else ""))
        arrays = {}
        for k, spec in specs.items():
            if not isinstance(spec, dict):
                _fail(shown, f"array spec of {k!r} is not an object")
            arrays[k] = _read_array(zf, by_name[f"arrays/{k}.npy"], spec, shown)
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
        # weight_ih of layer 0, weight_ih of layers above, weight_hh of all
        return D * G * H * (I + (L - 1) * D * H + L * H)
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


def load(path):
    """Read a model written by fr.save (or model.save); returns an fr.Sequential with its
    weights (and, when saved, its loss, optimizer state, clipping and metrics).
    Never runs code from the file; a corrupt or hostile file gets a ValueError."""
    if isinstance(path, (bytes, bytearray)):
        src, shown = io.BytesIO(bytes(path)), "<bytes>"
    else:
        src = shown = os.fspath(path)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"fr.load: no such file: {src!r}")
    try:
        config, arrays = _read_archive(src, shown)
    except _ARCHIVE_ERRORS as e:
        _fail(shown, f"damaged archive ({type(e).__name__}: {e})")
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
    try:
        model.load_state_dict(weights)
    except (TypeError, ValueError) as e:
        _fail(shown, f"weights do not fit the layers: {e}")
    comp = config.get("compile")
    if comp is not None:
        try:
            loss = losses.get(comp["loss"]["name"], **comp["loss"]["config"])
            ocfg = comp.get("optimizer")
            opt = "adam"
            if ocfg is not None:
                opt = optim.get(str(ocfg["class"]).lower(), **ocfg["config"])
            model.compile(loss=loss, optimizer=opt, clip_norm=comp.get("clip_norm"),
                          metrics=comp.get("metrics") or [])
            if ocfg is not None and ocfg.get("state") is not None:
                oarr = {k[len("optimizer/"):]: v for k, v in arrays.items()
                        if k.startswith("optimizer/")}
                model.optimizer.load_state_dict(ocfg["state"], oarr)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            _fail(shown, f"bad compile settings: {e}")
    return model

