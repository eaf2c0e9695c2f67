"""Shared helpers for the fastrnn test-suite.

Everything torch-related is optional: torch is imported lazily, so test files
that need no torch (the NumPy reference tests) still run where it is missing.

Helpers are plain functions exposed through the ``helpers`` fixture (a
namespace), so no test file has to import ``conftest`` by name.
"""
import types

import numpy as np
import pytest

try:  # keep CI fast and deterministic: torch's intra-op pool is not our subject
    import torch as _torch

    _torch.set_num_threads(1)
except Exception:  # pragma: no cover - torch is optional
    _torch = None


CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")

# torch's parameter name stems, in torch's order per layer and direction
PARAM_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def is_lstm(cell):
    return cell == "lstm"


def param_names(num_layers, bidirectional, bias=True):
    """torch's state_dict keys, in torch's order."""
    names = []
    for k in range(num_layers):
        for sfx in ("", "_reverse") if bidirectional else ("",):
            for stem in PARAM_STEMS if bias else PARAM_STEMS[:2]:
                names.append(f"{stem}_l{k}{sfx}")
    return names


def param_shapes(cell, input_size, hidden_size, num_layers, bidirectional, bias=True):
    """torch's parameter shapes, by name."""
    G, H = GATES[cell], hidden_size
    D = 2 if bidirectional else 1
    shapes = {}
    for name in param_names(num_layers, bidirectional, bias):
        layer = int(name.split("_l")[1].split("_")[0])
        In = input_size if layer == 0 else D * H
        if name.startswith("weight_ih"):
            shapes[name] = (G * H, In)
        elif name.startswith("weight_hh"):
            shapes[name] = (G * H, H)
        else:
            shapes[name] = (G * H,)
    return shapes


def make_fr(cell, input_size, hidden_size, **kw):
    """Construct a fastrnn layer of the given cell kind."""
    import fastrnn as fr

    if cell in ("rnn_tanh", "rnn_relu"):
        return fr.RNN(input_size, hidden_size, nonlinearity=cell[4:], **kw)
    if cell == "lstm":
        return fr.LSTM(input_size, hidden_size, **kw)
    if cell == "gru":
        return fr.GRU(input_size, hidden_size, **kw)
    raise ValueError(cell)


def make_torch(cell, input_size, hidden_size, num_layers=1, bias=True,
               batch_first=False, bidirectional=False, dropout=0.0,
               torch_seed=0, double=False):
    """Construct the torch module of the given cell kind (default torch init);
    skips the test where torch is not installed."""
    torch = pytest.importorskip("torch")

    torch.manual_seed(torch_seed)
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
              bidirectional=bidirectional, dropout=dropout)
    if cell in ("rnn_tanh", "rnn_relu"):
        m = torch.nn.RNN(input_size, hidden_size, nonlinearity=cell[4:], **kw)
    elif cell == "lstm":
        m = torch.nn.LSTM(input_size, hidden_size, **kw)
    elif cell == "gru":
        m = torch.nn.GRU(input_size, hidden_size, **kw)
    else:
        raise ValueError(cell)
    if double:
        m = m.double()
    return m


def torch_state_to_numpy(module):
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def make_pair(cell, input_size, hidden_size, num_layers=1, bias=True,
              batch_first=False, bidirectional=False, dtype="float32",
              torch_seed=0):
    """A torch module and the fastrnn layer holding the same weights.

    For dtype float32 the torch module is float32 (its default init) and the
    fastrnn layer receives its weights through load_state_dict; use
    ``module.double()`` (on a deepcopy) as a float64 oracle where wanted.
    """
    m = make_torch(cell, input_size, hidden_size, num_layers=num_layers, bias=bias,
                   batch_first=batch_first, bidirectional=bidirectional,
                   torch_seed=torch_seed, double=(dtype == "float64"))
    layer = make_fr(cell, input_size, hidden_size, num_layers=num_layers, bias=bias,
                    batch_first=batch_first, bidirectional=bidirectional, dtype=dtype)
    layer.load_state_dict(torch_state_to_numpy(m))
    return m, layer


def torch_run(module, x, state0=None, lengths=None, R=None, R_h=None, R_c=None,
              batch_first=False):
    """Run a torch recurrent module with autograd; return every value and grad.

    loss = sum(y * R) + sum(h_n * R_h) + sum(c_n * R_c) (terms with None are
    left out). Inputs are NumPy arrays, converted to the module's dtype.
    lengths (or None) use pack_padded_sequence(enforce_sorted=False) +
    pad_packed_sequence(total_length=T): torch's variable-length semantics.
    Returns a dict with y, h_n, c_n, dx, dh0, dc0 (NumPy, None where absent)
    and grads (dict name -> NumPy).
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    tdtype = next(module.parameters()).dtype
    lstm = isinstance(module, torch.nn.LSTM)
    module.zero_grad(set_to_none=True)

    xt = torch.tensor(np.asarray(x), dtype=tdtype, requires_grad=True)
    T = xt.shape[1] if batch_first else xt.shape[0]
    h0t = c0t = None
    hx = None
    if state0 is not None:
        if lstm:
            h0t = torch.tensor(np.asarray(state0[0]), dtype=tdtype, requires_grad=True)
            c0t = torch.tensor(np.asarray(state0[1]), dtype=tdtype, requires_grad=True)
            hx = (h0t, c0t)
        else:
            h0t = torch.tensor(np.asarray(state0), dtype=tdtype, requires_grad=True)
            hx = h0t

    if lengths is not None:
        packed = pack_padded_sequence(
            xt, torch.as_tensor(np.asarray(lengths), dtype=torch.int64),
            batch_first=batch_first, enforce_sorted=False)
        out, st = module(packed, hx)
        y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    else:
        y, st = module(xt, hx)
    h_n, c_n = (st if lstm else (st, None))

    loss = y.new_zeros(())
    if R is not None:
        loss = loss + (y * torch.tensor(np.asarray(R), dtype=tdtype)).sum()
    if R_h is not None:
        loss = loss + (h_n * torch.tensor(np.asarray(R_h), dtype=tdtype)).sum()
    if R_c is not None and lstm:
        loss = loss + (c_n * torch.tensor(np.asarray(R_c), dtype=tdtype)).sum()
    if loss.requires_grad:
        loss.backward()

    def np_(t):
        return None if t is None else t.detach().numpy().copy()

    def g_(t):
        if t is None:
            return None
        return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().copy()

    grads = {}
    for name, p in module.named_parameters():
        grads[name] = (np.zeros(tuple(p.shape)) if p.grad is None
                       else p.grad.detach().numpy().copy())
    return dict(y=np_(y), h_n=np_(h_n), c_n=np_(c_n), dx=g_(xt), dh0=g_(h0t),
                dc0=g_(c0t), grads=grads)


def assert_close(actual, expected, dtype, name="", rtol=None, atol=None):
    """Compare with the suite's tolerances.

    float32: rtol 2e-4, atol 1e-5 scaled by the largest |expected| (a
    gradient that is a sum of many O(scale) terms can only be resolved to
    a few float32 ulps of that scale); float64: rtol 1e-9, atol 1e-10 scaled
    likewise.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape} != expected {expected.shape}")
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    if str(np.dtype(dtype)) == "float32":
        rtol = 2e-4 if rtol is None else rtol
        atol = 1e-5 * scale if atol is None else atol
    else:
        rtol = 1e-9 if rtol is None else rtol
        atol = 1e-10 * scale if atol is None else atol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"mismatch in {name}")


def random_lengths(rng, B, T, mode):
    """mode: 'none' -> None, 'equal' -> all T, 'unequal' -> random in 1..T."""
    if mode == "none":
        return None
    if mode == "equal":
        return np.full(B, T, dtype=np.int64)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    if B > 1 and T > 1 and np.all(lengths == lengths[0]):
        lengths[0] = 1 if lengths[0] != 1 else T
    return lengths


def stream(layer, xs, state=None):
    """Step a layer through the frames xs: (stacked outputs, last state)."""
    ys = []
    for xt in xs:
        y, state = layer.step(xt, state)
        ys.append(y)
    return np.stack(ys), state


def run_capped(tmp_path, code, limit):
    """Run `code` in a fresh interpreter whose address space is capped at
    `limit` bytes (an allocation beyond it is a MemoryError, not a swap
    storm); returns its stdout. Skipped under the sanitizers: AddressSanitizer
    maps terabytes of shadow memory, which no fixed address-space cap admits."""
    import os
    import subprocess
    import sys
    import textwrap

    import fastrnn as fr
    if os.environ.get("FASTRNN_SANITIZED"):
        pytest.skip("RLIMIT_AS under AddressSanitizer (terabytes of shadow)")
    script = tmp_path / "capped.py"
    script.write_text("import resource\n"
                      "resource.setrlimit(resource.RLIMIT_AS, "
                      f"({limit}, resource.getrlimit(resource.RLIMIT_AS)[1]))\n"
                      + textwrap.dedent(code))
    root = os.path.dirname(os.path.dirname(os.path.abspath(fr.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=root)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       cwd=root, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


helpers_ns = types.SimpleNamespace(
    CELLS=CELLS, GATES=GATES, PARAM_STEMS=PARAM_STEMS, is_lstm=is_lstm,
    param_names=param_names, param_shapes=param_shapes, make_fr=make_fr,
    make_torch=make_torch, make_pair=make_pair,
    torch_state_to_numpy=torch_state_to_numpy, torch_run=torch_run,
    assert_close=assert_close, random_lengths=random_lengths, stream=stream,
    run_capped=run_capped,
)


@pytest.fixture
def helpers():
    """Namespace of the helpers above (make_fr, make_pair, torch_run, ...)."""
    return helpers_ns


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's node id (stable across runs).

    The id is taken as it was before the files moved into folders
    (tests/core/test_x.py::t -> tests/test_x.py::t), so every test still
    draws the numbers it always drew."""
    import zlib

    path, sep, rest = request.node.nodeid.partition("::")
    nodeid = "tests/" + path.rsplit("/", 1)[-1] + sep + rest
    return np.random.default_rng(zlib.crc32(nodeid.encode()))


@pytest.fixture
def restore_threads():
    """Restore fastrnn's thread setting after a test that changes it: the
    setting itself (None, OpenMP's default, stays None; restoring the count it
    gave would pin it and hide later threadpoolctl limits from other tests)."""
    import fastrnn as fr
    from fastrnn.backends.cpu import threads as _threads

    before = _threads.num_threads_setting()
    yield fr.get_num_threads()
    fr.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _fixed_thread_counts():
    """Adaptive threads off for the run: on a loaded test machine a stalled
    step would send calls to one thread, and tests that check counts or the
    step team's jobs would see it. tests/core/test_adaptive_threads.py turns
    it on for itself."""
    import fastrnn as fr

    was = fr.set_adaptive_threads(False)
    yield
    fr.set_adaptive_threads(was)


@pytest.fixture(scope="session", autouse=True)
def _private_temp_folder(tmp_path_factory):
    """tempfile's folder is a fresh one for the run (tests write under
    tmp_path): a file a test leaves there through tempfile fails the
    session, by name, instead of staying in the shared /tmp. Folders
    (libraries' caches) are let be."""
    import tempfile

    folder = tmp_path_factory.mktemp("tempfile")
    before = tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield
    tempfile.tempdir = before
    left = sorted(p.name for p in folder.iterdir() if not p.is_dir())
    if left:
        pytest.fail(f"tests left files in the temp folder: {left}", pytrace=False)


# ---------------------------------------------------------------------------
# Markers: registered in pyproject.toml, explained in tests/README.md, and
# assigned here (by folder, by file, by test) so that the test files need no
# edits. Paths are relative to tests/; a test is "file::function" (every
# parametrization) or "file::function[id]" (one of them).

from pathlib import Path  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent

# every test in these folders
FOLDER_MARKS = {
    "stress": ("slow",),     # leaks, threads, fuzzing, the step team
    "examples": ("slow",),   # example smoke runs and the bench CLI
    "distributed": ("slow", "distributed"),  # mpiexec, Dask and Ray clusters
}

# every test in these files (each skips as a whole without its package)
FILE_MARKS = {
    "parity/test_parity_torch.py": ("torch",),
    "parity/test_torch_interop.py": ("torch",),
    "parity/test_torch_sequential.py": ("torch",),
    "parity/test_proj_torch.py": ("torch",),
    "parity/test_seq2seq_torch_twin.py": ("torch",),
    "parity/test_thread_paths_torch.py": ("torch",),
    "formats/test_onnx_io.py": ("onnx",),
    "formats/test_sequential_onnx.py": ("onnx",),
    "formats/test_hostile_onnx.py": ("onnx",),
    "formats/test_onnx_node_tests.py": ("onnx",),
    # keras 3 runs on its torch backend here (KERAS_BACKEND=torch)
    "formats/test_keras_sequential.py": ("keras", "torch"),
    "formats/test_keras_models.py": ("keras", "torch"),
}

# single tests, by marker: the tests of other files that need the package for
# all or part of what they check (they skip where it is missing), and the
# tests of core/, parity/ and formats/ that take about 0.5 s or more
TEST_MARKS = {
    "torch": [
        "core/test_batch_invariance.py::test_invariant_forward_matches_torch",
        "core/test_errors.py::test_from_torch_rejects_other_things",
        "core/test_errors.py::test_torch_tensor_input_accepted",
        "core/test_freeze.py::test_frozen_matches_torch",
        "core/test_keras_habits.py::test_real_torch_tensor_requiring_grad_warns",
        "core/test_attention_pool_kernel.py::test_kernel_path_matches_torch",
        "core/test_layers.py::test_attention_pooling_matches_torch",
        "core/test_layers.py::test_dense_and_embedding_match_torch",
        "core/test_losses.py::test_bce_matches_torch",
        "core/test_losses.py::test_cross_entropy_matches_torch",
        "core/test_losses.py::test_ctc_empty_targets_all_forms",
        "core/test_losses.py::test_ctc_infeasible_targets",
        "core/test_losses.py::test_ctc_long_sequences_float32_against_float64_truth",
        "core/test_losses.py::test_ctc_matches_torch",
        "core/test_losses.py::test_mse_matches_torch",
        "core/test_model.py::test_sequential_gradients_match_torch",
        "core/test_optim.py::test_adam_with_step_schedule_matches_torch",
        "core/test_optim.py::test_changing_lr_matches_torch",
        "core/test_optim.py::test_clip_grad_norm_matches_torch",
        "core/test_optim.py::test_clip_grad_value",
        "core/test_optim.py::test_linear_warmup_is_torch_linear_lr",
        "core/test_optim.py::test_optimizer_matches_torch",
        "core/test_optim.py::test_plateau_matches_torch",
        "core/test_optim.py::test_schedule_matches_torch",
        "core/test_reference.py::test_dropmasks_match_stacked_torch_layers",
        "core/test_reference.py::test_matches_torch",
        "core/test_reference.py::test_matches_torch_random_configs",
        "core/test_regularized.py::test_layernorm_lstm_float32_close_to_torch",
        "core/test_regularized.py::test_values_and_gradients_match_torch",
        "core/test_variants.py::test_carry_matches_keras_masked_lstm",
        "docs/test_doctests.py::test_module_doctests[fastrnn.examples._seq2seq_torch]",
        "examples/test_bench_cli.py::test_check_passes_and_reports_every_quantity",
        "examples/test_bench_cli.py::test_planted_wrong_result_fails_the_row",
        "examples/test_bench_cli.py::test_reduced_peers_are_what_torch_and_ort_quantize",
        "examples/test_bench_cli.py::test_precision_int8_run",
        "examples/test_bench_cli.py::test_precision_planted_error_fails_the_row",
        "examples/test_bench_cli.py::test_precision_bf16_runs_or_refuses",
        "examples/test_examples_ctc.py::test_torch_twin_same_start",
        "examples/test_examples_seq.py::test_co2_torch_twin_same_start",
        "examples/test_examples_g2p.py::test_g2p_compare_torch_times_both",
        "examples/test_examples_seq.py::test_vowels_torch_twin_same_start",
        "examples/test_examples_text.py::test_cross_entropy_plain_path_same_bits",
        "formats/test_keras_io.py::test_live_bidirectional",
        "formats/test_keras_io.py::test_live_layers",
        "formats/test_keras_io.py::test_live_layers_that_do_not_map",
        "formats/test_keras_io.py::test_saved_file_read_without_keras_and_h5py_hint",
        "formats/test_keras_io.py::test_saved_functional_model_and_recurrent_only",
        "formats/test_keras_io.py::test_saved_keras_file_of_stacked_layers",
        "formats/test_keras_io.py::test_truncated_keras_file",
        "formats/test_onnx_io.py::test_initializers_listed_as_inputs",
        "formats/test_onnx_io.py::test_torch_export_dynamo_live",
        "formats/test_onnx_io.py::test_torch_export_torchscript",
        "stress/test_fuzz.py::test_wrong_device_and_foreign_arrays",
        "stress/test_step_team.py::test_team_one_step_calls_against_torch",
    ],
    "onnx": [
        "core/test_cell_options.py::test_gru_matches_onnxruntime_node",
        "core/test_variants.py::test_activation_matches_onnxruntime",
        "core/test_variants.py::test_activation_defaults_are_onnx_defaults",
        "core/test_variants.py::test_to_onnx_writes_the_options",
        "core/test_variants.py::test_to_onnx_refuses_projection_and_carry",
        "core/test_variants.py::test_lstm_options_match_onnxruntime",
        "core/test_variants.py::test_gru_rnn_activations_bidirectional_match_onnxruntime",
        "docs/test_doctests.py::test_markdown_python_blocks[docs/onnx.md]",
        "examples/test_bench_cli.py::test_reduced_peers_are_what_torch_and_ort_quantize",
        "examples/test_bench_cli.py::test_precision_int8_run",
    ],
    "keras": [  # keras 3 itself, or only h5py (reading .keras files)
        "core/test_variants.py::test_carry_matches_keras_masked_lstm",
        "docs/test_doctests.py::test_module_doctests[fastrnn.formats.keras]",
        "formats/test_keras_io.py::test_bad_sources",
        "formats/test_keras_io.py::test_live_bidirectional",
        "formats/test_keras_io.py::test_live_layers",
        "formats/test_keras_io.py::test_live_layers_that_do_not_map",
        "formats/test_keras_io.py::test_saved_file_read_without_keras_and_h5py_hint",
        "formats/test_keras_io.py::test_saved_functional_model_and_recurrent_only",
        "formats/test_keras_io.py::test_saved_keras_file_of_stacked_layers",
        "formats/test_keras_io.py::test_truncated_keras_file",
        "formats/test_hostile_keras.py::test_hand_built_file_loads",
        "formats/test_hostile_keras.py::test_units_of_the_wrong_type",
        "formats/test_hostile_keras.py::test_other_fields_of_the_wrong_type",
        "formats/test_hostile_keras.py::test_nested_config_fields",
        "formats/test_hostile_keras.py::test_null_activation_is_keras_linear",
        "formats/test_hostile_keras.py::test_bidirectional_of_a_backwards_layer",
        "formats/test_hostile_keras.py::test_bit_flips_in_the_zip_give_value_error",
        "formats/test_hostile_keras.py::test_max_bytes_caps_the_weights",
        "formats/test_hostile_keras.py::test_default_limit_applies",
        "formats/test_hostile_keras.py::test_weights_member_bomb_refused_by_ratio",
        "formats/test_hostile_keras.py::test_config_member_over_the_cap",
        "formats/test_hostile_keras.py::test_duplicate_members",
        "formats/test_hostile_keras.py::test_unknown_compression_method",
        "formats/test_hostile_keras.py::test_corrupt_deflate_stream",
        "formats/test_hostile_keras.py::test_sources_that_are_not_files",
        "formats/test_hostile_keras.py::test_bytes_source",
        "formats/test_hostile_keras.py::test_bit_flips_in_weights_give_value_error",
        "formats/test_hostile_keras.py::test_external_storage_refused",
        "formats/test_hostile_keras.py::test_virtual_dataset_refused",
        "formats/test_hostile_keras.py::test_external_links_refused",
        "formats/test_hostile_keras.py::test_soft_links_refused",
        "formats/test_hostile_keras.py::test_compressed_datasets_refused",
        "formats/test_hostile_keras.py::test_unwritten_huge_dataset_refused_before_reading",
        "formats/test_hostile_keras.py::test_kernel_dtype_and_shape_checked",
        "formats/test_hostile_keras.py::test_arrays_counted_against_the_cap",
        "formats/test_hostile_keras.py::test_node_types_checked",
    ],
    "slow": [  # --durations=0, 2 threads: 0.4-2.6 s each (the docs build: 10-20 s)
        "core/test_quantization.py::test_isa_builds_give_the_portable_bits[lstm-int8]",
        "core/test_quantization.py::test_isa_builds_give_the_portable_bits[lstm-bf16]",
        "core/test_shards.py::test_comm_of_the_wrong_kind_is_refused",
        "core/test_batch_invariance.py::test_wide_and_long_batches",
        "core/test_batch_invariance.py::test_batch1_large_w_hh",
        "core/test_batch_invariance.py::test_row_alone_equals_row_in_any_batch[lstm-float32-2]",
        "docs/test_sphinx_build.py::test_sphinx_html_build_has_no_warnings",
        "docs/test_doctests.py::test_markdown_python_blocks[README.md]",
        "docs/test_doctests.py::test_module_doctests[fastrnn.formats.keras]",
        "core/test_fast_path.py::test_panel_gemm[2300x2200x5]",
        "core/test_adaptive_threads.py::test_initial_setting_from_the_environment",
        "core/test_fast_path.py::test_activations_accuracy[8]",
        "core/test_hostile_inputs.py::test_step_refuses_too_many_rows_before_copying",
        "core/test_limits.py::test_impossible_workspace_gives_memory_error",
        "core/test_variants.py::test_carry_matches_keras_masked_lstm",
        "core/test_variants.py::test_gradients_central_differences[primes-lstm-clip-acts]",
        "core/test_variants.py::test_gradients_central_differences[primes-lstm-peep]",
        "core/test_variants.py::test_gradients_central_differences[primes-lstm-ifg]",
        "core/test_variants.py::test_gradients_central_differences[primes-lstm-proj]",
        "core/test_variants.py::test_resets_and_states_gradients_central_differences",
        "formats/test_hostile_native.py::test_save_past_the_file_size_limit_leaves_old_file",
        "formats/test_hostile_native.py::test_zip_bomb_refused_before_reading",
        "formats/test_io.py::test_every_config_value_replaced_gives_value_error",
        "formats/test_keras_io.py::test_saved_file_read_without_keras_and_h5py_hint",
        "formats/test_keras_models.py::test_embedding_mask_zero",
        "formats/test_keras_models.py::test_keras_activations",
        "formats/test_keras_models.py::test_recurrent_only_masked_model_maps_the_mask",
        "formats/test_hostile_keras.py::test_bit_flips_in_weights_give_value_error",
        "formats/test_hostile_keras.py::test_unwritten_huge_dataset_refused_before_reading",
        "formats/test_onnx_io.py::test_import_error_without_onnx",
        "formats/test_hostile_onnx.py::test_constant_of_shape_bomb_refused",
        "formats/test_hostile_onnx.py::test_file_object_read_is_capped",
        "formats/test_hostile_onnx.py::test_to_onnx_failure_keeps_the_old_file",
        # builds all of ONNX's node test cases, once a session (5-8 s)
        "formats/test_onnx_node_tests.py::test_the_selection_is_the_18_recurrent_cases",
        "parity/test_parity_torch.py::test_parity_float32_small_batch_paths[lstm-724-724-1-20]",
        "parity/test_parity_torch.py::test_parity_long_gemms[gru-5-11-64-70-float64]",
        "parity/test_seq2seq_torch_twin.py::test_gradients_central_differences"
        "[lstm-lstm-L22-bi-bahdanau-feed-dense]",
        # a fresh interpreter imports fastrnn with torch blocked
        "parity/test_seq2seq_torch_twin.py::test_import_needs_no_torch",
        # loky's two worker processes start and import numpy, sklearn, fastrnn: 5-13 s
        "core/test_sklearn.py::test_pipeline_and_grid_search_in_two_processes",
        "core/test_sklearn.py::test_import_fastrnn_does_not_import_sklearn",
        "core/test_sklearn.py::test_learns_the_blobs_of_check_classifiers_train",
        "core/test_sklearn.py::test_docs_example_runs",
        # fr.Seq2Seq trained on a toy task, twice on 1 and 2 threads, saved and resumed
        "core/test_seq2seq.py::test_learns_to_reverse_and_decodes_it",
        "core/test_seq2seq.py::test_seeded_fits_give_the_same_bits_on_1_and_2_threads",
        "core/test_seq2seq.py::test_save_load_round_trip_resumes_training",
        # (scikit-learn's estimator checks stay quick, and unnamed here: their
        # ids hold the estimator's repr and scikit-learn's check names)
    ],
}


def _split(test):
    """'file::function[id]' -> (file, function, id or None)."""
    rel, name = test.split("::")
    func, _, param = name.partition("[")
    return rel, func, (param[:-1] if param else None)


_TEST_MARKS = [(name, _split(t)) for name, tests in TEST_MARKS.items() for t in tests]


def _marks_of(rel, func, param):
    """The marker names of one test: rel (its file under tests/), function, id."""
    names = [*FOLDER_MARKS.get(rel.split("/")[0], ()), *FILE_MARKS.get(rel, ())]
    names += [name for name, (r, f, p) in _TEST_MARKS
              if (r, f) == (rel, func) and p in (None, param)]
    return dict.fromkeys(names)  # once each, in order


@pytest.hookimpl(tryfirst=True)  # before -m deselects by them
def pytest_collection_modifyitems(config, items):
    rel_of = {}   # item.path -> its path under tests/ (None: elsewhere)
    seen = {}     # (file, function) -> (module, the parametrization ids collected)
    for item in items:
        if item.path not in rel_of:
            try:
                rel_of[item.path] = item.path.resolve().relative_to(TESTS_DIR).as_posix()
            except ValueError:  # not under tests/ (pytest tests benchmarks)
                rel_of[item.path] = None
        rel = rel_of[item.path]
        if rel is None:
            continue
        func = getattr(item, "originalname", None) or item.name.split("[")[0]
        callspec = getattr(item, "callspec", None)
        param = callspec.id if callspec is not None else None
        seen.setdefault((rel, func), (getattr(item, "module", None), set()))[1].add(param)
        for name in _marks_of(rel, func, param):
            item.add_marker(name)
    _check_mark_tables(config, seen)


def _check_mark_tables(config, seen):
    """Stop on table entries that name no file or no test (renamed or moved),
    so that a marker cannot silently stop applying."""
    stale = [f for f in [*FOLDER_MARKS, *FILE_MARKS] if not (TESTS_DIR / f).exists()]
    modules = {rel: mod for (rel, _), (mod, _) in seen.items()}
    # with node ids on the command line only those parametrizations are collected
    every_id = not any("::" in str(a) for a in config.args)
    for name, (rel, func, param) in _TEST_MARKS:
        entry = f"{rel}::{func}" + (f"[{param}]" if param else "")
        if not (TESTS_DIR / rel).exists():
            stale.append(entry)
        elif modules.get(rel) is not None and not hasattr(modules[rel], func):
            stale.append(entry)
        elif param and every_id and (rel, func) in seen and param not in seen[rel, func][1]:
            stale.append(entry)
    if stale:
        raise pytest.UsageError("tests/conftest.py: marker tables name tests that do not "
                                "exist (renamed or moved?): " + ", ".join(sorted(set(stale))))
