"""The public API walked by the docstring tests: every name of ``fr.__all__``,
the public names of the submodules it exports (``fr.losses``, ``fr.optim``,
...), and the public methods and properties of every class among them.

Each object is listed once, under the import path where it is defined
(``fastrnn.recurrent.RNNBase.forward``, not once per subclass), so that
numpydoc's validator can import it by that path.
"""
import importlib
import inspect
import types

import fastrnn as fr

# Methods every class has from object or that are not API (pickling, copying).
_SKIP_METHODS = {"__init__", "__call__", "__repr__", "__getstate__", "__setstate__",
                 "__reduce__", "__reduce_ex__", "__deepcopy__", "__copy__"}


def _public(name):
    return not name.startswith("_")


def _module_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if _public(n)
                 and getattr(getattr(module, n), "__module__", None) == module.__name__]
    return list(names)


def _defined_path(obj, fallback):
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if mod and qual and "<" not in qual:
        return f"{mod}.{qual}"
    return fallback


def _members(cls):
    """(path, object) of the public methods and properties of cls, where defined."""
    out = []
    for klass in cls.__mro__:
        if klass is object or not klass.__module__.startswith("fastrnn"):
            continue
        for name, raw in vars(klass).items():
            if not _public(name) or name in _SKIP_METHODS:
                continue
            if name in {n for n, _ in _seen_in(cls, klass)}:
                continue
            fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if not fn.__doc__ and _overrides(cls, klass, name):
                continue  # no docstring of its own: it keeps the base's contract
            if isinstance(fn, property) or inspect.isfunction(fn):
                # defined on klass: validate it there (public or private class)
                out.append((f"{klass.__module__}.{klass.__qualname__}.{name}", fn))
    return out


def _overrides(cls, klass, name):
    """Whether a class after klass in cls's MRO defines name (klass overrides it):
    an override without a docstring inherits the base's (inspect.getdoc,
    help()), which is validated where the base defines it."""
    later = cls.__mro__[cls.__mro__.index(klass) + 1:]
    return any(name in vars(k) for k in later if k is not object)


def _seen_in(cls, klass):
    """Names defined by classes before klass in cls's MRO (overrides win)."""
    seen = []
    for k in cls.__mro__:
        if k is klass:
            break
        seen.extend((n, None) for n in vars(k))
    return seen


# Public modules that `import fastrnn` does not import (their packages are
# optional); walked when importable.
OPTIONAL_MODULES = ("fastrnn.sklearn", "fastrnn.distributed")


def public_objects(package=fr):
    """[(import path, object, kind)] of the public API; kind is one of
    "module", "class", "function", "method" (properties included)."""
    found = {}

    def add(path, obj, kind):
        key = id(obj)
        if key not in found:
            found[key] = (path, obj, kind)

    def add_name(owner_path, name, obj):
        if isinstance(obj, types.ModuleType):
            add(obj.__name__, obj, "module")
            for sub in _module_names(obj):
                add_name(obj.__name__, sub, getattr(obj, sub))
        elif inspect.isclass(obj):
            add(_defined_path(obj, f"{owner_path}.{name}"), obj, "class")
            for path, member in _members(obj):
                add(path, member, "method")
        elif callable(obj):
            add(_defined_path(obj, f"{owner_path}.{name}"), obj, "function")

    add(package.__name__, package, "module")
    for name in package.__all__:
        add_name(package.__name__, name, getattr(package, name))
    for modname in OPTIONAL_MODULES if package is fr else ():
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        add_name(package.__name__, modname.rsplit(".", 1)[1], mod)
    return sorted(found.values(), key=lambda t: t[0])


def top_level_names(package=fr):
    """The classes and functions of package.__all__ itself: these need Examples."""
    paths = set()
    for name in package.__all__:
        obj = getattr(package, name)
        if inspect.isclass(obj) or (callable(obj) and not isinstance(obj, types.ModuleType)):
            paths.add(_defined_path(obj, f"{package.__name__}.{name}"))
    return paths


def load(path):
    """The object at an import path such as fastrnn.recurrent.RNNBase.forward."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(path)


def validate(path):
    """numpydoc.validate.validate(path), also for a module without a def or
    class statement (numpydoc 1.11 raises StopIteration looking for one)."""
    from numpydoc.docscrape import get_doc_object
    from numpydoc.validate import Validator
    from numpydoc.validate import validate as _validate

    class _Validator(Validator):
        def __init__(self, obj_name):
            super().__init__(get_doc_object(Validator._load_obj(obj_name)))

        @property
        def source_file_def_line(self):
            try:
                return super().source_file_def_line
            except StopIteration:
                return None

    return _validate(path, validator_cls=_Validator)
