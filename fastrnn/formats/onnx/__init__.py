"""ONNX interchange: run ONNX graphs of recurrent models on fastrnn, and export
fastrnn recurrent layers to ONNX.

    m = fr.from_onnx("model.onnx")         # a path, an onnx.ModelProto or bytes
    out = m.run(None, {"ids": ids})        # ONNX Runtime's calling convention
    m.input_names, m.output_names, m.layers

    fr.to_onnx(layer_or_model, "model.onnx")   # or layer.to_onnx(...), model.to_onnx(...)

from_onnx checks the model with onnx.checker, then executes its graph node by
node: the ONNX RNN, LSTM and GRU nodes on fastrnn layers built from their
attributes and weights, every other node as NumPy (the ops that
torch.onnx.export emits around embeddings, recurrent layers and dense heads;
see OPS). Nothing in a file is ever executed as code: an unknown operator, a
custom domain or a sub-graph raises NotImplementedError naming it.

Hostile files are bounded (reader.py): the model's bytes, the external data
it reads and the arrays the load builds (initializers, attribute tensors,
folded constants) are each checked against max_bytes= (default
fr.formats.get_load_limit(), 1 GiB) before they are read or computed;
external data is read only from regular files inside a path's folder (never
for bytes, file objects or ModelProtos); every refusal names the initializer
or the node, its op and attribute. fr.to_onnx(obj, path) writes atomically.

How the ONNX recurrent operators map onto fastrnn (one ONNX node is one layer
of one or two directions):
    W [D, G*H, I], R [D, G*H, H]     -> weight_ih_l0{sfx}, weight_hh_l0{sfx}
    B [D, 2*G*H] = [Wb, Rb]          -> bias_ih_l0{sfx}, bias_hh_l0{sfx}
    gate blocks: LSTM i,o,f,c -> torch i,f,g,o; GRU z,r,h -> torch r,z,n
    GRU linear_before_reset=1        -> torch's GRU (b_hn inside the reset)
    GRU linear_before_reset=0        -> fr.GRU(linear_before_reset=False)
    clip                             -> the layers' clip= (gate pre-activations)
    RNN activations ["Relu"]         -> fr.RNN(nonlinearity="relu")
    other activations, activation_alpha, activation_beta
                                     -> activations=, activation_alpha=,
                                        activation_beta= (ONNX's packed lists
                                        aligned with the functions; where a
                                        list runs out, ONNX Runtime's defaults:
                                        0 for Affine, ScaledTanh and
                                        ThresholdedRelu)
    LSTM P [D, 3*H] (i, o, f)        -> peepholes=True, peephole_l0{sfx}
                                        (i, f, o); an all-zero P: no peepholes
    LSTM input_forget=1              -> input_forget=True
    direction "bidirectional"        -> bidirectional=True
    direction "reverse"              -> a forward layer fed each sequence
                                        reversed within its length (and its
                                        output reversed back)
    layout 1 ([B, T, .])             -> batch_first=True
    sequence_lens                    -> lengths (0 allowed: zero outputs and
                                        zero final states, as ONNX Runtime)
    outputs Y [T, D, B, H] (layout 1: [B, T, D, H]), Y_h / Y_c [D, B, H]
    (layout 1: [B, D, H]), zero past each sequence's length.
    T float16                        -> computed in float32, outputs float16
                                        (as ONNX Runtime's CPU provider)
Weights W, R, B, P may be constants (initializers, Constant nodes, what
folds from them: the layer is built once, at load) or graph inputs and
anything computed from them at run time. The rule for those: a node keeps
the layer it built last while each weight array is equal to the copy kept of
it (dtype, shape, every value: a comparison as long as the weights, each
run, so arrays changed in place count as changed), and builds a new one,
which OnnxModel.layers then holds, when any differs. A graph input with an
initializer default may be fed, as in ONNX Runtime: the nodes folded from
it at load run again.
What ONNX Runtime refuses is refused too (ValueError naming the node):
activation lists of the wrong length or with unknown names, shapes that do
not match, sequence_lens outside 0..T; and clip <= 0 (ORT refuses it for
LSTM and GRU, and runs it for RNN).

Export writes the same attributes back (P with ONNX's block order, every
alpha and beta written out); an LSTM with proj_size (ONNX has no projection)
and padding="carry" (ONNX gives zeros past a length) are refused with
ValueError.

Export: GraphBuilder collects nodes, initializers, inputs and outputs;
emit_recurrent(g, layer, x, ...) appends the nodes of one fastrnn recurrent
layer (one ONNX node per layer, a Transpose/Reshape between layers) and
returns the names of its outputs, so a whole model's exporter can chain it
with its own nodes. export_layer() is the single-layer graph behind
fr.to_onnx(layer); export_sequential() the whole-model graph behind
fr.to_onnx(model) (inputs "x" [, "lengths"], output "y").

The onnx package is optional: without it these functions raise ImportError
saying `pip install onnx`.

The package's parts: reader.py (loading, checking, the recurrent nodes and
OnnxModel), runtime.py (the NumPy implementations of the other operators,
OPS), export.py (GraphBuilder, emit_recurrent, export_layer,
export_sequential), _common.py (what reader and export share: the gate
orders and the onnx import).
"""
from .export import GraphBuilder, emit_recurrent, export_layer, export_sequential, to_onnx
from .reader import OnnxModel, from_onnx
from .runtime import OPS

__all__ = ["from_onnx", "OnnxModel", "GraphBuilder", "emit_recurrent", "export_layer",
           "export_sequential", "to_onnx", "OPS"]
