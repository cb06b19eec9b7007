"""MediaPipe's custom ops that have an exact built-in form, rewritten in a float .tflite before
calibration (LiteRT's built-in kernels, and so TensorFlow's calibrator, have no MediaPipe ops):

- `Convolution2DTransposeBias` (mediapipe/util/tflite/operations/transpose_conv_bias.cc): inputs
  (input NHWC, weights OHWI, bias), options `TfLiteTransposeConvParams` as three int32s (padding:
  1 same, 2 valid; stride width; stride height). It is TRANSPOSE_CONV with its bias input (the
  built-in takes the output shape first, then weights, input, bias).

Each rewrite is proven in float before it is used (`transposed_conv_error`): the rewritten model
runs in LiteRT, and the output of every rewritten op is checked against a transposed convolution
computed here in numpy from the op's own input, weights, bias and options.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
TOLERANCE = 1e-4  # relative to the op output's largest magnitude: float32 sums in another order
REWRITABLE = {TRANSPOSE_CONV_BIAS: "TRANSPOSE_CONV with its bias"}
NO_BUILTIN_FORM = {  # MediaPipe's other custom ops: what each computes, and why no built-in op is equal
    "MaxPoolingWithArgmax2D": "a max pool that also returns where each maximum was (for MaxUnpooling2D); "
    "no built-in op returns the positions",
    "MaxUnpooling2D": "values put back where MaxPoolingWithArgmax2D found them; no built-in op scatters by those positions",
    "Landmarks2TransformMatrix": "an affine matrix from landmark coordinates: geometry, for the app to compute",
    "TransformLandmarks": "landmarks moved by an affine matrix: geometry, for the app to compute",
    "TransformTensorBilinear": "a feature map resampled through an affine matrix (a crop and resize); "
    "no built-in op samples by a matrix",
}
MEDIAPIPE_PADDING = {1: "SAME", 2: "VALID"}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _packed(root) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _custom_code(root, op) -> str:
    code = root.operatorCodes[op.opcodeIndex]
    return (code.customCode or b"").decode("utf-8", "replace") if isinstance(code.customCode, bytes) else code.customCode or ""


REWRITTEN_AS = {TRANSPOSE_CONV_BIAS: "TRANSPOSE_CONV"}  # a custom op's name -> the built-in edgeq rewrites it to


def transposed_conv_bias_as_builtin(data: bytes) -> tuple[bytes, list[int]] | None:
    """The model with every Convolution2DTransposeBias as TRANSPOSE_CONV, and the rewritten ops'
    indices; None when it has none. An op whose options cannot be read is left as it is."""
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, rewritten = root.subgraphs[0], []
    opcode = None
    for index, op in enumerate(graph.operators):
        if _custom_code(root, op) != TRANSPOSE_CONV_BIAS or len(op.inputs) != 3 or op.customOptions is None:
            continue
        raw = bytes(bytearray(op.customOptions))
        if len(raw) < 12:
            continue
        padding, stride_w, stride_h = struct.unpack_from("<3i", raw)
        if padding not in MEDIAPIPE_PADDING or stride_w < 1 or stride_h < 1:
            continue
        if opcode is None:
            opcode = _opcode(root, schema.BuiltinOperator.TRANSPOSE_CONV)
        output = graph.tensors[op.outputs[0]]
        shape = schema.TensorT()
        shape.name, shape.type, shape.shape = output.name + b"/output_shape", schema.TensorType.INT32, [len(output.shape)]
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.asarray(output.shape, np.int32).tobytes(), np.uint8)
        root.buffers.append(buffer)
        shape.buffer = len(root.buffers) - 1
        graph.tensors.append(shape)
        options = schema.TransposeConvOptionsT()
        options.padding = schema.Padding.SAME if MEDIAPIPE_PADDING[padding] == "SAME" else schema.Padding.VALID
        options.strideW, options.strideH = stride_w, stride_h
        options.fusedActivationFunction = schema.ActivationFunctionType.NONE
        x, weights, bias = op.inputs
        op.opcodeIndex, op.inputs = opcode, [len(graph.tensors) - 1, weights, x, bias]
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.TransposeConvOptions, options
        op.customOptions, op.customOptionsFormat = None, 0
        rewritten.append(index)
    return (_packed(root), rewritten) if rewritten else None


def _opcode(root, builtin: int) -> int:
    schema = _schema()
    for i, code in enumerate(root.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 3  # v3: the bias input
    root.operatorCodes.append(code)
    return len(root.operatorCodes) - 1


def transposed_conv(
    x: np.ndarray, weights: np.ndarray, bias: np.ndarray, out_shape: tuple[int, ...], stride: tuple[int, int], same: bool
) -> np.ndarray:
    """A transposed convolution as TFLite defines it (NHWC input, OHWI weights, padding from the
    output size as a forward convolution of that output would have it), in float64."""
    n, h, w, _ = x.shape
    o, kh, kw, _ = weights.shape
    _, oh, ow, _ = out_shape
    sh, sw = stride
    pad_h = max((h - 1) * sh + kh - oh, 0) // 2 if same else 0
    pad_w = max((w - 1) * sw + kw - ow, 0) // 2 if same else 0
    full = np.zeros((n, (h - 1) * sh + kh, (w - 1) * sw + kw, o))
    for i in range(kh):
        for j in range(kw):
            full[:, i : i + (h - 1) * sh + 1 : sh, j : j + (w - 1) * sw + 1 : sw, :] += np.einsum(
                "nhwc,oc->nhwo", x.astype(np.float64), weights[:, i, j, :].astype(np.float64)
            )
    return full[:, pad_h : pad_h + oh, pad_w : pad_w + ow, :] + bias.astype(np.float64)


def transposed_conv_error(data: bytes, rewritten: list[int], folder: Path, seed: int = 0) -> float:
    """The largest difference, relative to the output's largest magnitude, between each rewritten
    op's output in LiteRT and the numpy transposed convolution of its own input, on one random input."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = folder / "rewritten.tflite"
    path.write_bytes(data)
    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor is for debugging: it is, here
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(  # LiteRT's own kernels: a delegate keeps no intermediate tensor to read
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.uniform(-1, 1, detail["shape"]).astype(detail["dtype"]))
    interpreter.invoke()
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, worst = root.subgraphs[0], 0.0
    for index in rewritten:
        op = graph.operators[index]
        shape, weights, x, bias = (interpreter.get_tensor(t) for t in op.inputs)
        got = interpreter.get_tensor(op.outputs[0])
        options = op.builtinOptions
        want = transposed_conv(
            x,
            weights,
            bias,
            tuple(int(d) for d in shape),
            (options.strideH, options.strideW),
            options.padding == schema.Padding.SAME,
        )
        worst = max(worst, float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12)))
    return worst
