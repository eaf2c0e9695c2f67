"""Before/after timing of two trees' Python API, in one process, calls paired.

    python tools/ab_python.py TREE_A TREE_B PAIRS THREADS SHAPE...

TREE_A, TREE_B: checkouts with the extension built in place (python
setup.py build_ext --inplace). Each tree's `fastrnn/` is imported under a name
of its own (fr_a, fr_b), so both live in this process. SHAPE: a reference
shape of fastrnn.bench (stream-step, lat-lstm, ..., var-lstm-train; "all"
for every one) or cell:B:T:I:H:mode[:var]. Inference and steps run a frozen
copy of the layer, training the layer itself (forward, then backward of
sum(y)), as the bench does. Both trees get the same weights and inputs.

For each shape, PAIRS pairs of blocks (a block: enough calls for ~20 ms on
A) run A then B, or B then A, in turn; the script prints the median of the
B/A time ratios of the pairs and their quartiles. A shared VM's speed drifts
by tens of percent within seconds; adjacent blocks see the same machine, so
the ratio of a pair holds where separate runs' times do not (a tree against
itself reads about 1.00). The ratio of the summed times follows: it counts
the slow spells a median of ratios passes over. Environment: PREC=int8|bf16 freezes with those
weights; WIDTH=8 runs both trees' AVX2 kernels (on an AVX-512 machine).
"""
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def _import_tree(tree, alias, workdir):
    link = os.path.join(workdir, alias)
    os.symlink(os.path.join(os.path.abspath(tree), "fastrnn"), link)
    return __import__(alias)


def _calls(fr, shape, lengths):
    cls = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[shape.cell]
    layer = cls(shape.I, shape.H, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.T, shape.B, shape.I)).astype(np.float32)
    if shape.mode == "train":
        dy = np.ones((shape.T, shape.B, shape.H), np.float32)

        def f():
            layer.zero_grad()
            layer.forward(x, lengths=lengths)
            layer.backward(dy)
        return f
    prec = os.environ.get("PREC")   # int8 / bf16: narrow weights (trees that have them)
    served = layer.freeze(weights=prec) if prec else layer.freeze()
    if shape.mode == "step":
        def f():
            state = None
            for t in range(shape.T):
                _, state = served.step(x[t], state)
        return f

    def f():
        served(x, lengths=lengths)
    return f


def _block(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return time.perf_counter() - t


def main(argv):
    if len(argv) < 5:
        raise SystemExit(__doc__)
    tree_a, tree_b, pairs, threads, specs = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4:]
    workdir = tempfile.mkdtemp(prefix="fastrnn-abpy-")
    sys.path.insert(0, workdir)
    fa = _import_tree(tree_a, "fr_a", workdir)
    fb = _import_tree(tree_b, "fr_b", workdir)
    # each tree its own extension: the registry names "fastrnn.backends.cpu",
    # which would be the editable install for both
    fa.backends.register("cpu", "fr_a.backends.cpu")
    fb.backends.register("cpu", "fr_b.backends.cpu")
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    fa.set_num_threads(threads)
    fb.set_num_threads(threads)
    width = os.environ.get("WIDTH")  # 8: the AVX2 kernels on an AVX-512 machine
    if width:
        for alias in ("fr_a", "fr_b"):
            __import__(alias + ".backends.cpu._ext", fromlist=["_ext"]).set_fast_width(int(width))
    from fr_b import bench  # the reference shapes
    specs = [n for spec in specs  # "all" anywhere: every reference shape there
             for n in ([s.name for s in bench.SHAPES] if spec == "all" else [spec])]
    print(f"A {os.path.abspath(tree_a)}\nB {os.path.abspath(tree_b)}\n"
          f"{pairs} pairs, {threads} threads; B/A time ratio: median [quartiles]")
    for spec in specs:
        shape = bench.get_shape(spec) if ":" not in spec else bench.parse_custom(spec)
        lengths = bench.lengths_for(shape)
        f_a, f_b = _calls(fa, shape, lengths), _calls(fb, shape, lengths)
        for f in (f_a, f_b, f_a, f_b):  # warm both
            f()
        n, t = 1, 0.0
        while t < 0.02:
            t = _block(f_a, n)
            if t < 0.02:
                n *= 2
        ratios, sum_a, sum_b = [], 0.0, 0.0
        for p in range(pairs):
            if p % 2 == 0:
                ta = _block(f_a, n)
                tb = _block(f_b, n)
            else:
                tb = _block(f_b, n)
                ta = _block(f_a, n)
            ratios.append(tb / ta)
            sum_a, sum_b = sum_a + ta, sum_b + tb
        q = statistics.quantiles(ratios, n=4)
        per = ta / n * (1e6 / shape.T if shape.mode == "step" else 1e3)
        unit = "us a step" if shape.mode == "step" else "ms"
        print(f"{spec:28s} {statistics.median(ratios):.3f} [{q[0]:.3f}, {q[2]:.3f}]"
              f"   (A {per:.3f} {unit}; B/A of the summed times {sum_b / sum_a:.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
