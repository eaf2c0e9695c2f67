"""fastrnn against ONNX Runtime (torch for training, which ORT does not
run) in one process, blocks paired: the check of a bench row whose spread is
wider than its gap.

    python tools/pair_peers.py PAIRS SPEC...

SPEC: a bench shape (cell:B:T:I:H:mode[:var], or a reference name such as
db-lstm-b4) or a model of the bench's model section at a batch (co2:1,
sentiment:32). Each pair times a block of fastrnn calls on 2 threads, a
block on 1 thread and a block of the peer's calls (about 30 ms each, timed as the
bench times a repeat: its mean call; the bench's own runners: frozen layer or model, the same weights and inputs), in turn,
the order reversed every other pair, 0.1 s apart (ORT's threads spin some
40 ms after a call). Prints the medians of the blocks and, per pair, the peer's time
over fastrnn's: their median and quartiles (above 1: fastrnn faster).
"""
import sys
import time

import numpy as np

import fastrnn as fr
from fastrnn import _bench_models as bm
from fastrnn import bench


def block(f, n):
    """Seconds a call over a block of n calls, as the bench times a repeat."""
    f()
    return bench._one_repeat(f, n)


def runners(spec):
    name, _, batch = spec.partition(":")
    if name in bm.MODELS_BY_NAME and batch.isdigit():
        case = bm.ModelCase(bm.MODELS_BY_NAME[name], int(batch), 2)
    else:
        try:
            shape = bench.get_shape(spec)
        except ValueError:
            shape = bench.parse_custom(spec)
        case = bench.Case(shape, threads=2)
    peer = "torch" if getattr(case, "shape", None) is not None and case.shape.mode == "train" \
        else "ort"
    return case.runner("fastrnn"), case.runner(peer), peer.replace("ort", "ORT")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    pairs = int(argv[0])
    was = fr.get_num_threads()
    bench.set_threads(2)
    try:
        return _pairs(pairs, argv[1:])
    finally:
        fr.set_num_threads(was)


def _pairs(pairs, specs):
    for spec in specs:
        fast, other, peer = runners(spec)
        n = max(3, bench._calls_per_repeat(fast, 0.03, 0.05))
        got = {"f2": [], "f1": [], "peer": []}
        for p in range(pairs):
            for k in (("f2", "f1", "peer") if p % 2 == 0 else ("peer", "f1", "f2")):
                time.sleep(0.1)
                fr.set_num_threads(1 if k == "f1" else 2)
                got[k].append(block(other if k == "peer" else fast, n))
            fr.set_num_threads(2)
        r2 = np.array(got["peer"]) / np.array(got["f2"])
        r1 = np.array(got["peer"]) / np.array(got["f1"])
        q = lambda r: "%.2f [%.2f, %.2f]" % (np.median(r), *np.percentile(r, [25, 75]))
        print("%-26s fastrnn %.4f ms (1 thread %.4f), %s %.4f ms; %s/fastrnn %s, "
              "%s/fastrnn 1 thread %s" % (spec, np.median(got["f2"]) * 1e3,
                                          np.median(got["f1"]) * 1e3, peer,
                                          np.median(got["peer"]) * 1e3, peer, q(r2), peer,
                                          q(r1)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
