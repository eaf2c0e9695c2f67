"""Before/after timing of two trees on the bench's whole models, in one
process, calls paired (as tools/ab_python.py does for layers).

    python tools/ab_models.py [--train] TREE_A TREE_B PAIRS THREADS MODEL:B...

MODEL:B: a model of the bench's model section (sentiment, vowels, co2,
charlm; fastrnn/_bench_models.py, read from TREE_B) at batch B, e.g.
sentiment:32; "all" for every model at 1, 32 and 256. Each tree builds the
model with the same seed (the same weights) and runs its frozen model call
on the same input; with --train, a training step of the trainable model
instead (forward, then backward of the mean of the outputs; the gradients
are zeroed first, so they do not grow). Prints the median of the B/A time
ratios of the pairs and their quartiles, and the largest difference of the
outputs (with --train, of the gradients).
"""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_python import _block, _import_tree  # noqa: E402


def main(argv):
    train = bool(argv) and argv[0] == "--train"
    if train:
        argv = argv[1:]
    if len(argv) < 5:
        raise SystemExit(__doc__)
    tree_a, tree_b, pairs, threads, specs = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4:]
    workdir = tempfile.mkdtemp(prefix="fastrnn-abmodels-")
    sys.path.insert(0, workdir)
    fa = _import_tree(tree_a, "fr_a", workdir)
    fb = _import_tree(tree_b, "fr_b", workdir)
    # each tree its own extension (as tools/ab_python.py does): the registry
    # names "fastrnn.backends.cpu", the editable install, for both
    fa.backends.register("cpu", "fr_a.backends.cpu")
    fb.backends.register("cpu", "fr_b.backends.cpu")
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    fa.set_num_threads(threads)
    fb.set_num_threads(threads)
    from fr_b import _bench_models as bm
    if specs == ["all"]:
        specs = ["%s:%d" % (m.name, B) for m in bm.MODELS for B in bm.MODEL_BATCHES]
    print(f"A {os.path.abspath(tree_a)}\nB {os.path.abspath(tree_b)}\n"
          f"{pairs} pairs, {threads} threads; B/A time ratio: median [quartiles]")
    import numpy as np
    for spec in specs:
        name, B = spec.split(":")
        m = bm.MODELS_BY_NAME[name]
        x = bm.make_input(m, int(B))
        ma, mb = bm.build(m, fr=fa), bm.build(m, fr=fb)
        if train:
            def step(model):
                out = model.forward(x)
                model.zero_grad()
                model.backward(np.full(out.shape, 1.0 / out.size, out.dtype))
                return np.concatenate([g.ravel() for _, _, g in model.parameters()])
        else:
            ma, mb = ma.freeze(), mb.freeze()

            def step(model):
                return model(x)
        diff = float(np.max(np.abs(step(ma) - step(mb))))

        def f_a():
            step(ma)

        def f_b():
            step(mb)
        for f in (f_a, f_b, f_a, f_b):
            f()
        n, t = 1, 0.0
        while t < 0.02:
            t = _block(f_a, n)
            if t < 0.02:
                n *= 2
        ratios = []
        for p in range(pairs):
            if p % 2 == 0:
                ta, tb = _block(f_a, n), _block(f_b, n)
            else:
                tb, ta = _block(f_b, n), _block(f_a, n)
            ratios.append(tb / ta)
        q = statistics.quantiles(ratios, n=4)
        print(f"{spec:16s} {statistics.median(ratios):.3f} [{q[0]:.3f}, {q[2]:.3f}]"
              f"   max |B - A| {diff:.2g}")


if __name__ == "__main__":
    main(sys.argv[1:])
