"""What the ONNX reader and exporter share: the optional onnx import and the
gate orders of the recurrent operators."""
import numpy as np

_ONNX_HINT = ("fastrnn's ONNX functions need the onnx package: pip install onnx "
              "(or pip install fastrnn[onnx])")


def _require_onnx():
    try:
        import onnx  # noqa: F401
        from onnx import numpy_helper  # noqa: F401
    except ImportError as e:
        raise ImportError(_ONNX_HINT) from e
    return onnx


# ---- gate orders -------------------------------------------------------------
# torch block k comes from ONNX block _TO_TORCH[op][k]; ONNX block j from torch
# block _TO_ONNX[op][j].
_TO_TORCH = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"],
                 "RNN": ["tanh"]}


def _block_perm(order, H):
    """Row indices picking gate blocks of H rows in `order`."""
    return np.concatenate([np.arange(b * H, (b + 1) * H) for b in order])

