"""What the examples share: command-line options, thread pinning, locating
data inside installed packages without importing them, timing, and the result
line/JSON every example prints."""
import argparse
import importlib.util
import json
import os
import sys
import time


def parser(description, epochs, batch_size, threads=2):
    """The options every example takes; `threads` is the --threads default."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of a few seconds on a small slice (CI)")
    p.add_argument("--compare-torch", action="store_true",
                   help="also train the same architecture in PyTorch and compare")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=threads,
                   help=f"threads for fastrnn and torch alike (default {threads})")
    p.add_argument("--out", default="examples_out",
                   help="folder for plots and the JSON of results")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    p.add_argument("--precision", type=precision_list, default=[], metavar="P[,P]",
                   help="also score the trained float32 model frozen with these weights "
                        "(int8, bf16; comma-separated): model.freeze(weights=P), the "
                        "task metric side by side with float32")
    return p


PRECISIONS = ("int8", "bf16")


def precision_list(text):
    """--precision's value: a list of int8 / bf16, each once."""
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in PRECISIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            "%r: expected int8, bf16 or int8,bf16" % text)
    return list(dict.fromkeys(names))


def check_precisions(args):
    """Refuse --precision before any training when this fastrnn cannot
    freeze a model with those weights (SystemExit naming the reason)."""
    import fastrnn as fr
    for p in args.precision:
        try:
            got = fr.LSTM(3, 4, seed=0).freeze(weights=p).weights_precision
        except TypeError as e:
            if "weights" not in str(e):
                raise
            raise SystemExit(f"--precision {p}: this fastrnn has no layer.freeze(weights=...) "
                             "(reduced-precision inference is not built in)") from None
        except (ValueError, NotImplementedError) as e:
            raise SystemExit(f"--precision {p}: fastrnn refuses it: {e}") from None
        if got != p:
            raise SystemExit(f"--precision {p}: layer.freeze(weights={p!r}) gave "
                             f"weights_precision {got!r}")


def frozen_at_precisions(model, args):
    """[(precision, copy)]: the trained model frozen with float32 weights (the
    same bits as the model) and with each --precision, for scoring."""
    return [("float32", model.freeze())] + [(p, model.freeze(weights=p))
                                           for p in args.precision]


# The targets for reduced-precision weights, as (kind, bound) on the
# change of a metric from float32: "points" an absolute change of a rate
# (0.5 points = 0.005), "abs" an absolute change, "rel" a relative one.
TARGETS = {"accuracy": ("points", 0.005), "cer": ("points", 0.005),
           "bpc": ("abs", 0.02), "rmse": ("rel", 0.02)}


def report_precisions(name, metric, kind, per_precision, results):
    """Print `metric` of the float32-trained model at each precision side by
    side (mean over seeds), its change from float32 and whether it is
    within TARGETS[kind]; add rows "fastrnn P" to `results`. per_precision
    maps a precision to its list of per-seed values (float32 first)."""
    if len(per_precision) < 2:
        return
    how, bound = TARGETS[kind]
    base = sum(per_precision["float32"]) / len(per_precision["float32"])
    print(f"\n{name}: {metric} of the trained float32 model frozen at each weight "
          f"precision (mean of {len(per_precision['float32'])} run(s)); target: change "
          + {"points": f"within {100 * bound:g} points", "abs": f"within {bound:g}",
             "rel": f"within {100 * bound:g}%"}[how])
    print("precision".ljust(12) + metric.rjust(14) + "change".rjust(12) + "  target")
    for p, values in per_precision.items():
        v = sum(values) / len(values)
        change = v - base
        rel = change / base if base else 0.0
        ok = abs(rel if how == "rel" else change) <= bound
        shown = f"{100 * rel:+.2f}%" if how == "rel" else f"{change:+.4f}"
        print(p.ljust(12) + f"{v:.4f}".rjust(14) + ("-" if p == "float32" else shown).rjust(12)
              + ("" if p == "float32" else "  " + ("ok" if ok else "MISSED")))
        if p != "float32":
            results[f"fastrnn {p}"] = {metric: v, "change": change,
                                       "within_target": bool(ok)}


def pin_threads(n):
    """Same thread count for fastrnn, its BLAS and torch: fair timings, and no
    oversubscription when two processes share the cores. torch's count is set
    only when torch is already imported (--compare-torch imports it first):
    importing torch just to pin it costs seconds."""
    import fastrnn as fr
    fr.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:  # pragma: no cover - fastrnn depends on it
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def package_dir(name):
    """Folder of an installed package, found without importing it (so
    `pip install --no-deps NAME` is enough for its data files)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"this example reads data shipped in the '{name}' package: "
                         f"pip install --no-deps {name}")
    return spec.submodule_search_locations[0]


def need_torch():
    """Import torch for --compare-torch, with fastrnn's thread count (so the
    order of this call and pin_threads does not matter)."""
    try:
        import torch
    except ImportError:
        raise SystemExit("--compare-torch needs PyTorch: pip install torch") from None
    import fastrnn as fr
    torch.set_num_threads(fr.get_num_threads())
    return torch


def warm_up(*runs):
    """Run each engine's warm-up, untimed, before any timed fit.

    Each run trains a throwaway copy of one engine's model on one batch
    (same code path, same thread count), so the one-time start-up of each
    engine -- thread pools, kernel selection, first allocations -- is
    paid here by both alike and stays out of both fit times; the models
    that are timed are not touched."""
    for run in runs:
        if run is not None:
            run()


def fit_copy(model, *args, **kw):
    """A fastrnn warm-up run for warm_up: fit a deep copy of `model` (the
    model itself keeps its weights, optimizer state and seed)."""
    import copy
    return lambda: copy.deepcopy(model).fit(*args, verbose=0, **kw)


def with_epochs(args, epochs):
    """A copy of the parsed options with another epoch count (warm-ups run 1)."""
    return argparse.Namespace(**{**vars(args), "epochs": epochs, "verbose": 0})


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def report(name, args, results):
    """Print the results table and write OUT/NAME.json; `results` maps an
    engine ('fastrnn', 'torch', baselines) to a dict of metrics."""
    os.makedirs(args.out, exist_ok=True)
    keys = []
    for r in results.values():
        keys += [k for k in r if k not in keys]
    print()
    print(f"{name}: " + ("quick smoke run" if args.quick else "results"))
    print("engine".ljust(14) + "".join(k.rjust(16) for k in keys))
    for eng, r in results.items():
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)).rjust(16))
        print(eng.ljust(14) + "".join(cells))
    path = os.path.join(args.out, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"example": name, "args": vars(args), "results": results,
                   "command": " ".join([os.path.basename(sys.executable), "-m",
                                        f"fastrnn.examples.{name}"] + sys.argv[1:])},
                  f, indent=1)
    print(f"results written to {path}")
    return path
