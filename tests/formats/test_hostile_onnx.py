"""fr.from_onnx and fr.to_onnx against hostile files and inputs (issue 27).

1. Sources: directories, FIFOs, devices, endless file objects, files over the cap.
2. External data: no model folder, locations leaving the folder, offsets and
   lengths past the file, directories/FIFOs/devices, the cap.
3. Sizes: declared initializer dims, folded operators (ConstantOfShape,
   Expand, Tile, Range, Concat, MatMul, Gather, broadcasting, Cast), repeated
   attributes and the run-time shape operators against the load cap.
4. Recurrent attributes: every refusal names the node, its op and the attribute.
5. to_onnx: atomic writes (directory refused, old file kept on failure,
   symlinks never written through).
6. Siblings: Constant tensors with external data, string tensors, raw_data
   and typed-field lengths that do not match the dims, bad Cast targets.
Hostile models are built with onnx.helper and stay a few KiB; what would
allocate GiBs on the old code runs in a subprocess under RLIMIT_AS.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastrnn as fr

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastrnn.formats.onnx import OnnxModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20


@pytest.fixture
def small_cap():
    """The default load cap at 1 MiB for one test."""
    prev = fr.formats.set_load_limit(MIB)
    yield MIB
    fr.formats.set_load_limit(prev)


def graph_model(nodes, inits, outputs, inputs=(), opset=17):
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT if t is None else t, None)
            for o, t in outputs]
    ins = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    g = helper.make_graph(nodes, "g", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def i64(name, v):
    return numpy_helper.from_array(np.array(v, np.int64), name)


def f32(name, v):
    return numpy_helper.from_array(np.array(v, np.float32), name)


def run_limited(code, slack_mib=512, fsize=None, cwd=None):
    """Run `code` in a child Python whose address space is capped at what it
    uses after importing fastrnn and onnx plus slack_mib (and whose files at
    `fsize` bytes); returns its stdout (the code prints its outcome)."""
    prelude = textwrap.dedent(f"""
        import os, resource, signal, sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np, onnx
        import fastrnn as fr
        vm = [l for l in open("/proc/self/status") if l.startswith("VmSize")][0]
        limit = int(vm.split()[1]) * 1024 + {slack_mib} * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if {fsize!r} is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize!r}, {fsize!r}))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=cwd or ROOT)
    return r.stdout + r.stderr


OUTCOME = """
    try:
        {call}
        print("LOADED")
    except BaseException as e:
        print("RAISED", type(e).__name__, str(e)[:300])
"""


# ---- 1. sources ---------------------------------------------------------------------

def tiny_model():
    return graph_model([helper.make_node("Identity", ["x"], ["y"], name="id")], [],
                       [("y", None)], inputs=[("x", TensorProto.FLOAT, [2])])


def test_directory_fifo_and_device_sources_say_what_they_are(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        fr.from_onnx(str(tmp_path))
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        fr.from_onnx(str(fifo))
    link = tmp_path / "zero.onnx"
    os.symlink("/dev/zero", link)
    with pytest.raises(ValueError, match=r"is a device \(a symlink to it\)"):
        fr.from_onnx(link)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fr.from_onnx(str(tmp_path / "missing.onnx"))


def test_model_file_over_the_cap_refused_before_reading(tmp_path, small_cap):
    big = tmp_path / "big.onnx"
    big.write_bytes(tiny_model().SerializeToString() + b"\0" * (2 * MIB))
    with pytest.raises(ValueError, match="big.onnx.*load cap"):
        fr.from_onnx(str(big))


def test_file_object_read_is_capped():
    """A file object that never ends (/dev/zero): the old loader read it all."""
    out = run_limited(OUTCOME.format(
        call="fr.formats.set_load_limit(1 << 20); fr.from_onnx(open('/dev/zero', 'rb'))"))
    assert "RAISED ValueError" in out and "load cap" in out, out


def test_max_bytes_argument(tmp_path):
    m = graph_model([helper.make_node("Identity", ["w"], ["y"], name="id")],
                    [f32("w", np.zeros(1024))], [("y", None)])
    with pytest.raises(ValueError, match="initializer 'w'.*4096 bytes.*load cap of 1000"):
        fr.from_onnx(m, max_bytes=1000)
    assert fr.from_onnx(m, max_bytes=4096).run(None, {})[0].shape == (1024,)
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="byte cap"):
            fr.from_onnx(m, max_bytes=bad)


# ---- 2. external data --------------------------------------------------------------

def external(name, dims, location, offset=None, length=None, dtype=TensorProto.FLOAT):
    t = TensorProto()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return t


def ext_model(location="w.bin", dims=(2, 3), offset=None, length=None):
    return graph_model([helper.make_node("Identity", ["W"], ["y"], name="id")],
                       [external("W", dims, location, offset, length)], [("y", None)])


def write_model(folder, model, name="model.onnx"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return str(path)


W6 = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.mark.parametrize("kind", ["bytes", "file object", "ModelProto"])
def test_external_data_needs_a_model_folder(tmp_path, monkeypatch, kind):
    """Without a path there is no model folder: the old loader read w.bin
    from the process's current folder."""
    monkeypatch.chdir(tmp_path)
    W6.tofile(tmp_path / "w.bin")
    m = ext_model()
    data = m.SerializeToString()
    src = {"bytes": data, "ModelProto": m}.get(kind)
    if kind == "file object":
        (tmp_path / "m.onnx").write_bytes(data)
        src = open(tmp_path / "m.onnx", "rb")
    try:
        with pytest.raises(ValueError, match="initializer 'W'.*'w.bin'.*no model folder"):
            fr.from_onnx(src)
    finally:
        if kind == "file object":
            src.close()


def test_external_data_inside_the_folder_loads(tmp_path):
    """Two initializers in one file at offsets, and one in a sub-folder."""
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    np.concatenate([W6.ravel(), -W6.ravel()]).tofile(d / "w.bin")
    (W6 * 2).tofile(d / "sub" / "v.bin")
    nodes = [helper.make_node("Add", ["W", "V"], ["s"], name="add"),
             helper.make_node("Add", ["s", "U"], ["y"], name="add2")]
    inits = [external("W", (2, 3), "w.bin", length=24),
             external("V", (2, 3), "w.bin", offset=24),
             external("U", (2, 3), "sub/v.bin", offset=0, length=24)]
    y = fr.from_onnx(write_model(d, graph_model(nodes, inits, [("y", None)]))).run(None, {})[0]
    np.testing.assert_array_equal(y, W6 * 2)


def test_external_data_written_by_onnx_loads(tmp_path):
    """What onnx.save writes with save_as_external_data (all weights in one file)."""
    layer = fr.GRU(3, 5, num_layers=2)
    path = str(tmp_path / "gru.onnx")
    onnx.save_model(layer.to_onnx(), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="gru.bin", size_threshold=0)
    assert os.path.getsize(tmp_path / "gru.bin") > 0
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y = fr.from_onnx(path).run(["output"], {"input": x})[0]
    np.testing.assert_allclose(y, layer(x)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["absolute", "dotdot", "dotdot inside", "symlink out",
                                  "symlinked folder out", "empty"])
def test_external_data_cannot_leave_the_model_folder(tmp_path, case):
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    secret = tmp_path / "secret.bin"
    W6.tofile(secret)
    loc = {"absolute": str(secret), "dotdot": "../secret.bin",
           "dotdot inside": "sub/../../secret.bin", "symlink out": "w.bin",
           "symlinked folder out": "out/secret.bin", "empty": ""}[case]
    if case == "symlink out":
        os.symlink(secret, d / "w.bin")
    if case == "symlinked folder out":
        os.symlink(tmp_path, d / "out")
    with pytest.raises(ValueError, match="initializer 'W'.*external data location"):
        fr.from_onnx(write_model(d, ext_model(loc)))


def test_external_data_symlink_inside_the_folder_is_fine(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    W6.tofile(d / "real.bin")
    os.symlink("real.bin", d / "w.bin")
    np.testing.assert_array_equal(fr.from_onnx(write_model(d, ext_model())).run(None, {})[0],
                                  W6)


@pytest.mark.parametrize("offset,length,match", [
    (100, None, "offset 100 is past the end of 'w.bin' \\(24 bytes\\)"),
    (8, 24, "offset 8 \\+ length 24 .* past the end of 'w.bin' \\(24 bytes\\)"),
    (None, 12, "length 12 .* dims \\[2, 3\\] of float32 need 24"),
    (-4, None, "offset -4"),
    ("x", None, "offset 'x' is not"),
    (None, "-1", "length -1"),
])
def test_external_data_offset_and_length_checked(tmp_path, offset, length, match):
    d = tmp_path / "m"
    d.mkdir()
    W6.tofile(d / "w.bin")
    with pytest.raises(ValueError, match="initializer 'W'.*" + match):
        fr.from_onnx(write_model(d, ext_model(offset=offset, length=length)))


def test_external_data_shorter_than_the_dims(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    W6.ravel()[:4].tofile(d / "w.bin")
    with pytest.raises(ValueError, match="initializer 'W'.*'w.bin' \\(16 bytes\\).*need 24"):
        fr.from_onnx(write_model(d, ext_model()))


@pytest.mark.parametrize("kind", ["directory", "FIFO", "device"])
def test_external_data_must_be_a_regular_file(tmp_path, kind):
    d = tmp_path / "m"
    d.mkdir()
    if kind == "directory":
        (d / "w.bin").mkdir()
        match = "is a directory"
    elif kind == "FIFO":
        os.mkfifo(d / "w.bin")
        match = "is a FIFO"
    else:  # inside the folder by name; its target is a device
        os.symlink("/dev/zero", d / "w.bin")
        match = "external data location 'w.bin'"
    with pytest.raises(ValueError, match="initializer 'W'.*" + match):
        fr.from_onnx(write_model(d, ext_model()))


def test_external_data_over_the_cap_refused_before_reading(tmp_path, small_cap):
    d = tmp_path / "m"
    d.mkdir()
    np.zeros(2 * MIB // 4 + 16, np.float32).tofile(d / "w.bin")
    with pytest.raises(ValueError, match="initializer 'W'.*load cap"):
        fr.from_onnx(write_model(d, ext_model(dims=(2 * MIB // 4,))))


def test_constant_with_external_data_needs_a_model_folder(tmp_path, monkeypatch):
    """Sibling: a Constant node's tensor can point at external data too."""
    monkeypatch.chdir(tmp_path)
    W6.tofile(tmp_path / "w.bin")
    node = helper.make_node("Constant", [], ["y"], name="c",
                            value=external("cw", (2, 3), "w.bin"))
    m = graph_model([node], [], [("y", None)])
    with pytest.raises(ValueError, match="Constant node 'c'.*attribute 'value'.*no model folder"):
        fr.from_onnx(m.SerializeToString())
    d = tmp_path / "m"
    d.mkdir()
    W6.tofile(d / "w.bin")
    np.testing.assert_array_equal(fr.from_onnx(write_model(d, m)).run(None, {})[0], W6)


# ---- 3. sizes ---------------------------------------------------------------------------

def bomb_model():
    """142 bytes asking ConstantOfShape for [3, 2**28] float32 zeros: 3 GiB."""
    return graph_model([helper.make_node("Constant", [], ["s"], value=i64("v", [3, 2 ** 28])),
                        helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")],
                       [], [("y", None)])


def test_constant_of_shape_bomb_refused(tmp_path):
    path = tmp_path / "bomb.onnx"
    path.write_bytes(bomb_model().SerializeToString())
    assert path.stat().st_size < 200
    out = run_limited(OUTCOME.format(call=f"fr.from_onnx({str(path)!r})"))
    assert "RAISED ValueError" in out, out
    assert "ConstantOfShape node 'cos'" in out and "3221225472 bytes" in out, out


def _fold_cases():
    n = helper.make_node
    return {
        "ConstantOfShape": ([n("ConstantOfShape", ["s"], ["y"], name="op")],
                            [i64("s", [1024, 1024])]),
        "Expand": ([n("Expand", ["x", "s"], ["y"], name="op")],
                   [f32("x", [1.0]), i64("s", [1024, 1024])]),
        "Tile": ([n("Tile", ["x", "r"], ["y"], name="op")],
                 [f32("x", [[1.0]]), i64("r", [1024, 1024])]),
        "Range": ([n("Range", ["a", "b", "c"], ["y"], name="op")],
                  [i64("a", 0), i64("b", 1 << 20), i64("c", 1)]),
        "Concat": ([n("Concat", ["x"] * 64, ["y"], name="op", axis=0)],
                   [f32("x", np.zeros(1 << 14))]),
        "MatMul": ([n("MatMul", ["a", "b"], ["y"], name="op")],
                   [f32("a", np.ones((1024, 1))), f32("b", np.ones((1, 1024)))]),
        "Gather": ([n("Gather", ["x", "i"], ["y"], name="op", axis=0)],
                   [f32("x", np.ones((1, 1024))), i64("i", np.zeros(1024))]),
        "Add": ([n("Add", ["a", "b"], ["y"], name="op")],
                [f32("a", np.ones((1024, 1))), f32("b", np.ones((1, 1024)))]),
        "Where": ([n("Where", ["c", "a", "b"], ["y"], name="op")],
                  [numpy_helper.from_array(np.ones((1024, 1), bool), "c"),
                   f32("a", np.ones((1, 1024))), f32("b", [0.0])]),
        "Cast": ([n("Cast", ["x"], ["y"], name="op", to=TensorProto.DOUBLE)],
                 [numpy_helper.from_array(np.ones(1 << 18, np.int8), "x")]),
    }


@pytest.mark.parametrize("op", sorted(_fold_cases()))
def test_folded_operators_checked_against_the_cap(op, small_cap):
    nodes, inits = _fold_cases()[op]
    m = graph_model(nodes, inits, [("y", None)])
    assert len(m.SerializeToString()) < 300 * 1024
    with pytest.raises(ValueError, match=f"{op} node 'op'.*load cap of {MIB} bytes"):
        fr.from_onnx(m)


def test_folded_sizes_refuse_negative_and_bad_values():
    n = helper.make_node
    cases = [
        (n("ConstantOfShape", ["s"], ["y"], name="op"), [i64("s", [-1, 3])],
         "ConstantOfShape node 'op'.*shape \\[-1, 3\\].*negative"),
        (n("Expand", ["x", "s"], ["y"], name="op"), [f32("x", [1.0]), i64("s", [2, -5])],
         "Expand node 'op'.*shape \\[2, -5\\].*negative"),
        (n("Tile", ["x", "r"], ["y"], name="op"), [f32("x", [[1.0]]), i64("r", [1, -2])],
         "Tile node 'op'.*repeats \\[1, -2\\].*negative"),
        (n("Range", ["a", "b", "c"], ["y"], name="op"), [i64("a", 0), i64("b", 5), i64("c", 0)],
         "Range node 'op'.*delta.*0"),
        (n("Range", ["a", "b", "c"], ["y"], name="op"),
         [f32("a", 0), f32("b", np.inf), f32("c", 1)], "Range node 'op'.*not finite"),
        (n("Reshape", ["x", "s"], ["y"], name="op"), [f32("x", [1.0]), i64("s", np.ones(100))],
         "Reshape node 'op'.*shape has 100 entries"),
    ]
    for node, inits, match in cases:
        with pytest.raises(ValueError, match=match):
            fr.from_onnx(graph_model([node], inits, [("y", None)]))


def test_declared_dims_checked_before_reading():
    """The checker catches these from files; OnnxModel on a ModelProto checks them too."""
    def bare(dims, raw=b""):
        t = TensorProto()
        t.name, t.data_type = "W", TensorProto.FLOAT
        t.dims.extend(dims)
        t.raw_data = raw
        return graph_model([helper.make_node("Identity", ["W"], ["y"], name="id")], [t],
                           [("y", None)])
    with pytest.raises(ValueError, match="initializer 'W'.*3221225472 bytes.*load cap"):
        OnnxModel(bare([3, 2 ** 28]))
    with pytest.raises(ValueError, match="initializer 'W'.*dims \\[-1\\].*negative"):
        OnnxModel(bare([-1]))
    with pytest.raises(ValueError, match="initializer 'W'.*raw_data holds 4 bytes.*need 32"):
        OnnxModel(bare([4, 2], b"\0" * 4))


def test_raw_data_and_typed_fields_must_match_the_dims():
    t = TensorProto()
    t.name, t.data_type = "W", TensorProto.FLOAT
    t.dims.extend([3])
    t.raw_data = b"\0" * 20  # 5 floats for 3: the checker only refuses too few
    m = graph_model([helper.make_node("Identity", ["W"], ["y"], name="id")], [t],
                    [("y", None)])
    with pytest.raises(ValueError, match="initializer 'W'.*raw_data holds 20 bytes.*"
                                         "dims \\[3\\] of float32 need 12"):
        fr.from_onnx(m)
    t = helper.make_tensor("I", TensorProto.INT64, [1], [5])
    t.dims[0] = 7
    m = graph_model([helper.make_node("Identity", ["I"], ["y"], name="id")], [t],
                    [("y", TensorProto.INT64)])
    with pytest.raises(ValueError, match="initializer 'I'.*int64_data holds 1 values.*"
                                         "dims \\[7\\] need 7"):
        OnnxModel(m)


def test_string_tensors_refused():
    """A string tensor's NumPy array is as wide as its longest string times
    its count: a few MiB of strings could ask for TiBs."""
    t = helper.make_tensor("S", TensorProto.STRING, [3], [b"a" * 1000, b"", b""])
    m = graph_model([helper.make_node("Identity", ["S"], ["y"], name="id")], [t],
                    [("y", TensorProto.STRING)])
    with pytest.raises(NotImplementedError, match="initializer 'S'.*string"):
        fr.from_onnx(m)


def test_repeated_attributes_count_against_the_cap(small_cap):
    node = helper.make_node("Constant", [], ["y"], name="c", value_ints=[1] * (1 << 16))
    m = graph_model([node], [], [("y", TensorProto.INT64)])
    with pytest.raises(ValueError, match="Constant node 'c'.*attribute 'value_ints'.*load cap"):
        fr.from_onnx(m)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile", "Range"])
def test_run_time_shape_operators_checked_against_the_cap(op, small_cap):
    """Sizes taken from a fed tensor's values are checked at run time too."""
    n = helper.make_node
    nodes = {"ConstantOfShape": [n("ConstantOfShape", ["s"], ["y"], name="op")],
             "Expand": [n("Expand", ["one", "s"], ["y"], name="op")],
             "Tile": [n("Tile", ["one2", "s"], ["y"], name="op")],
             "Range": [n("ReduceProd", ["s"], ["p"], name="prod", keepdims=0),
                       n("Range", ["zero", "p", "inc"], ["y"], name="op")]}[op]
    inits = [f32("one", [1.0]), f32("one2", [[1.0]]), i64("zero", 0), i64("inc", 1)]
    m = graph_model(nodes, inits, [("y", None)], inputs=[("s", TensorProto.INT64, [2])])
    model = fr.from_onnx(m)
    assert model.run(None, {"s": np.array([4, 4])})[0].size == 16
    with pytest.raises(ValueError, match=f"{op} node 'op'.*load cap"):
        model.run(None, {"s": np.array([1024, 1024])})


def test_cast_to_an_unknown_type_names_the_attribute():
    m = graph_model([helper.make_node("Cast", ["x"], ["y"], name="c", to=999)],
                    [f32("x", [1.0])], [("y", None)])
    with pytest.raises(ValueError, match="Cast node 'c'.*attribute 'to'.*999"):
        OnnxModel(m)


def test_other_attribute_refusals_name_node_and_attribute():
    """Sibling: the NumPy operators' int attributes, checked like the recurrent ones."""
    n = helper.make_node
    cases = [
        (n("Gather", ["x", "i"], ["y"], name="g", axis="one"),
         "Gather node 'g'.*attribute 'axis' must be an int"),
        (n("Split", ["x"], ["y"], name="s", axis=0, num_outputs=10 ** 9),
         "Split node 's'.*attribute 'num_outputs' is 1000000000"),
        (n("Softmax", ["x"], ["y"], name="sm", axis=[1, 2]),
         "Softmax node 'sm'.*attribute 'axis' must be an int"),
    ]
    for node, match in cases:
        m = graph_model([node], [f32("x", [1.0, 2.0]), i64("i", [0])], [("y", None)],
                        opset=18)
        with pytest.raises(ValueError, match=match):
            OnnxModel(m)


# ---- 4. recurrent attributes ------------------------------------------------------------

def lstm_model(op="LSTM", H=4, D=1, R_shape=None, **attrs):
    """One node 'enc' with weights of hidden size 4 and attribute hidden_size H."""
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[op]
    h = 4
    inits = [f32("W", np.zeros((D, G * h, 3))),
             f32("R", np.zeros(R_shape or (D, G * h, h)))]
    if H is not None:
        attrs["hidden_size"] = H
    node = helper.make_node(op, ["X", "W", "R"], ["Y"], name="enc", **attrs)
    return graph_model([node], inits, [("Y", None)],
                       inputs=[("X", TensorProto.FLOAT, [2, 1, 3])])


@pytest.mark.parametrize("op,attr,value,exc", [
    ("LSTM", "hidden_size", 0, ValueError),
    ("LSTM", "hidden_size", -8, ValueError),
    ("GRU", "hidden_size", 5, ValueError),  # W and R hold 4
    ("LSTM", "layout", 2, ValueError),
    ("LSTM", "direction", "sideways", ValueError),
    ("LSTM", "activations", ["Sigmoid", "Tanh"], ValueError),
    ("LSTM", "activations", ["Swish", "Tanh", "Tanh"], ValueError),
    ("RNN", "activations", ["Relu", "Tanh"], ValueError),
    ("LSTM", "clip", -1.0, ValueError),
    ("LSTM", "input_forget", 3, ValueError),
    ("GRU", "linear_before_reset", 2, ValueError),
])
def test_recurrent_attribute_refusals_name_node_and_attribute(op, attr, value, exc):
    m = lstm_model(op, **{attr: value}) if attr != "hidden_size" else lstm_model(op, H=value)
    with pytest.raises(exc, match=f"{op} node 'enc'.*attribute '{attr}'"):
        fr.from_onnx(m)


def test_hidden_size_read_off_an_empty_R_names_the_node():
    m = lstm_model(H=None, R_shape=(1, 16, 0))
    with pytest.raises(ValueError, match="LSTM node 'enc'.*hidden_size.*R"):
        fr.from_onnx(m)


def test_input_size_zero_names_the_node():
    node = helper.make_node("GRU", ["X", "W", "R"], ["Y"], name="enc", hidden_size=2)
    m = graph_model([node], [f32("W", np.zeros((1, 6, 0))), f32("R", np.zeros((1, 6, 2)))],
                    [("Y", None)], inputs=[("X", TensorProto.FLOAT, [2, 1, 0])])
    with pytest.raises(ValueError, match="GRU node 'enc'.*W"):
        fr.from_onnx(m)


# ---- 5. to_onnx -------------------------------------------------------------------------

EXPORTS = {"layer": lambda: fr.LSTM(8, 32),
           "Sequential": lambda: fr.Sequential([fr.GRU(8, 32, batch_first=True),
                                                fr.LastStep(), fr.Dense(32, 2)])}


@pytest.mark.parametrize("what", sorted(EXPORTS))
def test_to_onnx_refuses_a_directory(tmp_path, what):
    with pytest.raises(ValueError, match="is a directory"):
        fr.to_onnx(EXPORTS[what](), str(tmp_path))


def test_to_onnx_failure_keeps_the_old_file(tmp_path):
    """A write that fails half way (here: a file size limit, as a full disk)
    leaves the old file whole and no temporary file behind."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"OLD")
    out = run_limited(OUTCOME.format(call=f"fr.to_onnx(fr.LSTM(8, 32), {str(path)!r})"),
                      fsize=4096)
    assert "RAISED" in out, out
    assert path.read_bytes() == b"OLD"
    assert os.listdir(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize("what", sorted(EXPORTS))
def test_to_onnx_never_writes_through_a_symlink(tmp_path, what):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    path = tmp_path / "model.onnx"
    os.symlink(victim, path)
    fr.to_onnx(EXPORTS[what](), str(path))
    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink()
    fr.from_onnx(str(path))


def test_to_onnx_planted_temporary_symlink_not_followed(tmp_path, monkeypatch):
    import tempfile
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / ".model.onnx.planted.tmp")
    fr.to_onnx(fr.LSTM(8, 32), str(tmp_path / "model.onnx"))
    assert victim.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == [".model.onnx.planted.tmp", "model.onnx",
                                            "victim.txt"]
    fr.from_onnx(str(tmp_path / "model.onnx"))
