"""The bench's model section (``python -m fastrnn.bench --models``): the
examples' whole models, served as users serve them, against torch running
``fr.to_torch(model)`` and ONNX Runtime running ``fr.to_onnx(model)``.

The models are built layer for layer as the examples' ``build_model`` builds
them with their default sizes (random weights: the time does not depend on
them); the inputs are random ids or features of the examples' lengths, every
sequence full length. fastrnn runs the frozen model's call (``model.freeze()``,
made once, as ORT's session packs its weights once); torch the converted
module under ``torch.inference_mode``; ORT the exported graph with the same
thread count. Before timing, the three outputs are compared (the bench's
float32 claim); a model whose outputs differ is not timed.

The bench passes its timing function in (``measure``: bench.measure_spread),
so this module sits below bench.py in the import layers and knows nothing of
its shapes.
"""

import gc
from dataclasses import dataclass

import numpy as np

MODEL_BATCHES = (1, 32, 256)


@dataclass(frozen=True)
class ModelSpec:
    """One example's model: its name, the sequence length it is served at,
    and how its input is drawn ("ids" below `vocab`, or `features` floats)."""
    name: str
    T: int
    vocab: int = 0
    features: int = 0


# the examples' default sizes (fastrnn/examples/<name>.py, build_model)
MODELS = (
    # Embedding(10000, 64) -> BiLSTM(64) -> AttentionPooling(128, 64) -> Dense(128, 2)
    ModelSpec("sentiment", T=40, vocab=10000),
    # BiGRU(12, 64) -> MeanPooling -> Dense(128, 9): JapaneseVowels, up to 29 frames
    ModelSpec("vowels", T=29, features=12),
    # GRU(1, 32) -> LastStep -> Dense(32, 52): 52 weeks of history, 52 ahead
    ModelSpec("co2", T=52, features=1),
    # Embedding(V, 32) -> LSTM(32, 128) -> Dense(128, V), a 100-character window
    ModelSpec("charlm", T=100, vocab=70),
)
MODELS_BY_NAME = {m.name: m for m in MODELS}


def build(spec, seed=0, fr=None):
    """The example's model (fastrnn.Sequential) with random weights; fr: the
    fastrnn package to build it with (another tree's, tools/ab_models.py)."""
    if fr is None:
        import fastrnn as fr
    if spec.name == "sentiment":
        layers = [fr.Embedding(spec.vocab, 64, padding_idx=0),
                  fr.LSTM(64, 64, batch_first=True, bidirectional=True),
                  fr.AttentionPooling(128, 64), fr.Dense(128, 2)]
    elif spec.name == "vowels":
        layers = [fr.GRU(spec.features, 64, batch_first=True, bidirectional=True),
                  fr.MeanPooling(), fr.Dense(128, 9)]
    elif spec.name == "co2":
        layers = [fr.GRU(spec.features, 32, batch_first=True), fr.LastStep(),
                  fr.Dense(32, 52)]
    elif spec.name == "charlm":
        layers = [fr.Embedding(spec.vocab, 32), fr.LSTM(32, 128, batch_first=True),
                  fr.Dense(128, spec.vocab)]
    else:
        raise ValueError("unknown model %r; known: %s" % (spec.name, ", ".join(MODELS_BY_NAME)))
    return fr.Sequential(layers, seed=seed)


def make_input(spec, B, seed=0):
    rng = np.random.default_rng(seed)
    if spec.vocab:
        return rng.integers(1, spec.vocab, size=(B, spec.T)).astype(np.int64)
    return rng.standard_normal((B, spec.T, spec.features)).astype(np.float32)


class ModelCase:
    """One model at one batch: the input and a zero-argument call per engine
    (``runner``), all on the same weights."""

    def __init__(self, spec, B, threads):
        self.spec, self.B, self.threads = spec, B, threads
        self.model = build(spec)
        self.x = make_input(spec, B)

    def runner(self, engine):
        return getattr(self, "_run_" + engine)()

    def _run_fastrnn(self):
        frozen, x = self.model.freeze(), self.x
        return lambda: frozen(x)

    def _run_torch(self):
        import torch
        import fastrnn as fr
        module = fr.to_torch(self.model).eval()
        xt = torch.from_numpy(self.x)

        def run():
            with torch.inference_mode():
                return module(xt).numpy()
        return run

    def _run_ort(self):
        import onnxruntime as ort
        import fastrnn as fr
        ort.set_default_logger_severity(4)
        proto = fr.to_onnx(self.model, lengths=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(proto.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        feeds = {name: self.x}
        return lambda: sess.run(None, feeds)[0]


def _check(outs, rtol=2e-4, atol=1e-5):
    """Max abs difference of each engine's output from fastrnn's; raises
    ValueError naming an engine outside the bench's float32 claim."""
    ref = np.asarray(outs["fastrnn"], np.float64)
    scale = max(1.0, float(np.max(np.abs(ref))))
    diffs = {}
    for e, y in outs.items():
        if e == "fastrnn":
            continue
        y = np.asarray(y, np.float64)
        if y.shape != ref.shape:
            raise ValueError("%s: output shape %s, fastrnn's %s" % (e, y.shape, ref.shape))
        diffs[e] = float(np.max(np.abs(y - ref)))
        if not np.allclose(y, ref, rtol=rtol, atol=atol * scale):
            raise ValueError("%s differs from fastrnn by up to %.3g" % (e, diffs[e]))
    return diffs


def _wider(a, b):
    """Whether a's or b's spread (max - min) is wider than the gap between
    their medians (as bench.spread_wider_than_gap)."""
    width = max(a["max"] - a["min"], b["max"] - b["min"])
    return bool(width > abs(a["median"] - b["median"]))


def run_models(names, batches, engines, threads, measure, repeat, min_time, progress,
               notes):
    """Time each model at each batch on the engines (of fastrnn, torch, ort)
    with `measure` (bench.measure_spread's signature). Returns a list of
    result dicts: model, B, T, ms (median), ms_min, ms_max, speedup (peer ms
    / fastrnn ms), check."""
    results = []
    for name in names:
        spec = MODELS_BY_NAME[name]
        for B in batches:
            progress("bench: model %s B=%d T=%d" % (name, B, spec.T))
            case = ModelCase(spec, B, threads)
            fns = {}
            for e in engines:
                try:
                    fns[e] = case.runner(e)
                except ImportError as err:
                    notes.append("model %s: %s not run (%s)" % (name, e, err))
            row = {"model": name, "B": B, "T": spec.T, "ms": {}, "ms_min": {},
                   "ms_max": {}, "speedup": {}, "check": None}
            try:
                row["check"] = _check({e: f() for e, f in fns.items()})
            except ValueError as err:
                row["check"] = "FAIL: %s" % err
                notes.append("model %s B=%d: FAIL, not timed: %s" % (name, B, err))
                results.append(row)
                continue
            stats, errors = measure(fns, repeat=repeat, min_time=min_time)
            for e, err in errors.items():
                notes.append("model %s B=%d: %s failed: %s" % (name, B, e, err))
            for e, st in stats.items():
                row["ms"][e] = st["median"] * 1e3
                row["ms_min"][e] = st["min"] * 1e3
                row["ms_max"][e] = st["max"] * 1e3
            f = row["ms"].get("fastrnn")
            spread = {e: {k: row[key][e] for k, key in (("min", "ms_min"), ("median", "ms"),
                                                         ("max", "ms_max"))}
                      for e in row["ms"]}
            row["spread_wider_than_gap"] = {
                p: _wider(spread["fastrnn"], spread[p]) for p in row["ms"]
                if p != "fastrnn" and "fastrnn" in spread}
            if f:
                row["speedup"] = {p: row["ms"][p] / f for p in row["ms"] if p != "fastrnn"}
            progress("    " + ", ".join("%s %.3f ms" % kv for kv in row["ms"].items()))
            results.append(row)
            fns.clear()
            del case
            gc.collect()
    return results


def format_models(results):
    """The model section's table: medians, fastrnn's speedup over each peer
    ('?' where a spread is wider than the gap), and spreads."""
    cols = ["model", "B", "T", "fastrnn ms", "torch ms", "ORT ms", "vs torch", "vs ORT",
            "spread f/torch/ORT"]
    rows = []
    for r in results:
        if isinstance(r["check"], str):
            rows.append([r["model"], str(r["B"]), str(r["T"]), "FAIL", "-", "-",
                         "check failed", "-", "-"])
            continue

        def ms(e):
            v = r["ms"].get(e)
            return "-" if v is None else ("%.3f" % v if v < 10 else "%.1f" % v)

        def sp(p):
            v = r["speedup"].get(p)
            flag = " ?" if r["spread_wider_than_gap"].get(p) else ""
            return "-" if v is None else "%.2fx%s" % (v, flag)

        spreads = []
        for e in ("fastrnn", "torch", "ort"):
            if e in r["ms"]:
                spreads.append("%.0f%%" % (100 * (r["ms_max"][e] - r["ms_min"][e])
                                           / r["ms"][e]))
        rows.append([r["model"], str(r["B"]), str(r["T"]), ms("fastrnn"), ms("torch"),
                     ms("ort"), sp("torch"), sp("ort"), "/".join(spreads)])
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
              for i, c in enumerate(cols)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])
