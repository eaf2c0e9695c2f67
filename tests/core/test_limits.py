"""Sizes: index arithmetic is 64-bit, and what cannot be done fails cleanly.

- T*B rows beyond 2^31-1 (the BLAS's 32-bit row count) are refused with a
  ValueError before anything is copied or allocated (x may be a broadcast view
  of a few bytes standing for terabytes);
- T*B*4H beyond 2^31 elements is computed in 64 bits: the workspace asked for
  is its true size (here ~9 GiB), and when it cannot be had the call raises
  MemoryError (checked in a subprocess whose address space is capped), the
  layer stays usable afterwards.
"""
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastrnn as fr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cls", [fr.LSTM, fr.GRU, fr.RNN])
def test_rows_beyond_int32_refused_without_allocating(cls, batch_first):
    layer = cls(1, 4, batch_first=batch_first, seed=0)
    T, B = 2**16, 2**15 + 1  # T*B = 2^31 + 2^16: 8 GiB as float32
    x = np.broadcast_to(np.float32(0.5), (B, T, 1) if batch_first else (T, B, 1))
    tracemalloc.start()
    try:
        for call in (lambda: layer(x), lambda: layer.forward(x)):
            with pytest.raises(ValueError, match=r"T\*B"):
                call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    y, _ = layer(np.ones((3, 2, 1), np.float32))  # still usable
    assert np.all(np.isfinite(y))


_MEMORY_SCRIPT = textwrap.dedent("""
    import re, resource, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import fastrnn as fr
    with open("/proc/self/status") as f:
        vm = int(re.search(r"VmSize:\\s+(\\d+) kB", f.read()).group(1)) * 1024
    cap = vm + (5 << 30)               # what is mapped now + 5 GiB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    T, B, H = 2048, 256, 1100          # T*B*4H = 2.3e9 > 2^31 elements
    lstm = fr.LSTM(8, H, seed=0)
    x = np.broadcast_to(np.float32(0.1), (T, B, 8))
    for name, call in (("call", lambda: lstm(x)), ("forward", lambda: lstm.forward(x))):
        try:
            call()
            print(name, "ok")
        except MemoryError as e:
            m = re.search(r"shape \\((\\d+),?\\)", str(e))
            print(name, "MemoryError", m.group(1) if m else "?")
    m = fr.Sequential([fr.GRU(8, H, batch_first=True), fr.LastStep()])
    try:
        m.predict(np.broadcast_to(np.float32(0.1), (B, T, 8)), batch_size=B)
        print("predict ok")
    except MemoryError:
        print("predict MemoryError")
    y, _ = lstm(np.ones((3, 2, 8), np.float32))
    print("after", bool(np.isfinite(y).all()))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.environ.get("FASTRNN_SANITIZED"),
                    reason="RLIMIT_AS on Linux (AddressSanitizer maps terabytes of shadow)")
def test_impossible_workspace_gives_memory_error():
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT.format(root=ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    T, B, H = 2048, 256, 1100
    for name in ("call", "forward"):
        kind, _, count = lines[name].partition(" ")
        assert kind == "MemoryError", lines
        # the buffer asked for is at least the (T, B, 4H) gate block: its
        # element count did not wrap around in 32 bits
        assert int(count) >= T * B * 4 * H
    assert lines["predict"] == "MemoryError"
    assert lines["after"] == "True"
