"""Time fastrnn alone on a few shapes, for before/after comparisons of two
builds: run it with PYTHONPATH pointing at each checkout in turn, several
times alternating, and compare the medians (the machine's noise moves single
runs by 10-30%).

    PYTHONPATH=/path/to/build python benchmarks/time_shapes.py THREADS cell:B:T:I:H:mode[:var] ...

mode: infer (the inference call), train (forward keeping activations plus
backward of sum(y)) or step (T streaming step() calls carrying the state,
reported per call in us); var: lengths 10..T as the bench's var-* shapes
(fastrnn.bench.lengths_for); each shape is timed for about 2 seconds.
"""
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn.bench import Shape, lengths_for


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    nt = int(argv[0])
    fr.set_num_threads(nt)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(nt)
    except ImportError:
        pass
    out = []
    for spec in argv[1:]:
        cell, B, T, I, H, mode, *var = spec.split(":")
        B, T, I, H = (int(v) for v in (B, T, I, H))
        kw = {}
        if var == ["var"]:
            kw["lengths"] = lengths_for(Shape(spec, cell, B, T, I, H, mode, var=True))
        elif var:
            raise SystemExit(f"{spec}: the 7th field can only be 'var'")
        layer = {"lstm": fr.LSTM, "gru": fr.GRU, "rnn": fr.RNN}[cell](I, H, seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        if mode == "infer":
            def f():
                layer(x, **kw)
        elif mode == "train":
            dy = np.ones((T, B, H), np.float32)

            def f():
                layer.forward(x, **kw)
                layer.backward(dy)
        elif mode == "step":
            def f():
                st = None
                for t in range(T):
                    _, st = layer.step(x[t], st)
        else:
            raise SystemExit(f"{spec}: mode must be infer, train or step")
        f()
        ts = []
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end or len(ts) < 5:
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        if mode == "step":
            out.append(f"{spec} us/call min {min(ts) * 1e6 / T:.2f} med {np.median(ts) * 1e6 / T:.2f}")
        else:
            out.append(f"{spec} min {min(ts) * 1e3:.3f} med {np.median(ts) * 1e3:.3f}")
    print(" | ".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])
