"""Rewrites of a calibrated float graph (the flatbuffer TensorFlow's calibrator writes, every
tensor's min/max recorded) into ops XNNPACK runs in int8, so that the whole graph stays one
delegate partition where the int8 op itself would fall to LiteRT's built-in kernels:

- `prelu_as_leaky_relu`: a PRELU whose slope is one constant value for every channel is a
  LEAKY_RELU with that alpha (same output tensor, same range).
- `hard_swish_decomposed`: HARD_SWISH(x) = x * relu6(x + 3) / 6, as ADD, RELU6, MUL and MUL; the
  new tensors get their ranges from x's (x + 3, clipped to 0..6, the products' bounds).
- `relu_as_fused_mul`: a RELU, RELU6 or RELU_N1_TO_1 op of its own (XNNPACK in LiteRT 2.3 runs none
  of them in int8, though it runs the same clamp fused into a MUL) as MUL(x, 1) with that fused
  activation; the output tensor and its range are the RELU's.
- `average_pool_rewritten`: XNNPACK runs no int8 AVERAGE_POOL_2D. One over the whole of its input
  (a global pool, 1x1 out; MediaPipe's selfie segmentation has ten) as MEAN over height and width;
  any other with VALID padding (PP-OCRv4's recognizer has a 3x2 one) as a DEPTHWISE_CONV_2D of
  constant weights 1 / (kernel area). The output tensor and its range are the pool's.
- `prelu_decomposed`: a PRELU with a slope per channel (MediaPipe's landmark models have dozens; no
  int8 PRELU runs on XNNPACK) as relu(x) - alpha * relu(-x): MUL(x, 1) and MUL(x, -1) with a fused
  RELU, a MUL by alpha and a SUB, ranges from x's.

Each returns None where the graph has nothing to rewrite. The caller proves the rewritten graph
equal in float before using it (edgeq.conversion.search.latency)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

REWRITES: dict[str, str] = {
    "prelu_as_leaky_relu": "PRELU with one slope as LEAKY_RELU",
    "hard_swish_decomposed": "HARD_SWISH as x * relu6(x + 3) / 6",
    "relu_as_fused_mul": "RELU as MUL(x, 1) with a fused RELU",
    "prelu_decomposed": "PRELU as relu(x) - alpha * relu(-x)",
    "average_pool_rewritten": "AVERAGE_POOL_2D as MEAN or DEPTHWISE_CONV_2D",
}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _packed(root) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode(root, builtin: int) -> int:
    """The index of `builtin`'s operator code, added if the model has none."""
    schema = _schema()
    for i, code in enumerate(root.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    root.operatorCodes.append(code)
    return len(root.operatorCodes) - 1


def _is(root, op, builtin: int) -> bool:
    code = root.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode) == builtin


def _constant(root, tensor) -> np.ndarray | None:
    buffer = root.buffers[tensor.buffer] if tensor.buffer < len(root.buffers) else None
    if buffer is None or buffer.data is None or len(buffer.data) == 0 or tensor.type != _schema().TensorType.FLOAT32:
        return None
    return np.frombuffer(bytes(bytearray(buffer.data)), np.float32)


def prelu_as_leaky_relu(data: bytes) -> bytes | None:
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, changed = root.subgraphs[0], False
    for op in graph.operators:
        if not _is(root, op, schema.BuiltinOperator.PRELU):
            continue
        alpha = _constant(root, graph.tensors[op.inputs[1]])
        if alpha is None or alpha.size == 0 or not np.all(alpha == alpha[0]):
            continue
        options = schema.LeakyReluOptionsT()
        options.alpha = float(alpha[0])
        op.opcodeIndex = _opcode(root, schema.BuiltinOperator.LEAKY_RELU)
        op.inputs = [op.inputs[0]]
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.LeakyReluOptions, options
        changed = True
    return _packed(root) if changed else None


def _range(tensor) -> tuple[float, float] | None:
    q = tensor.quantization
    if q is None or q.min is None or q.max is None or len(q.min) != 1:
        return None
    return float(q.min[0]), float(q.max[0])


def _tensor(root, graph, name: str, like, low: float | None, high: float | None) -> int:
    """A new float32 tensor shaped like `like`, with its calibrated range where the graph is
    calibrated (`low`/`high` not None)."""
    schema = _schema()
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.shape = name.encode(), schema.TensorType.FLOAT32, list(like.shape)
    if low is not None:
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.min, tensor.quantization.max = [low], [high]
    root.buffers.append(schema.BufferT())
    tensor.buffer = len(root.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _scalar(root, graph, name: str, like, value: float) -> int:
    """A float32 constant `value`, shaped [1] * the rank of `like` (it broadcasts against it)."""
    return _constant_tensor(root, graph, name.encode(), np.full([1] * len(like.shape), value, np.float32))


def _binary(root, builtin: int, options_type: int, options_cls: Callable, inputs: list[int], output: int, activation: int = 0):
    schema = _schema()
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(root, builtin)
    op.inputs, op.outputs = inputs, [output]
    options = options_cls()
    options.fusedActivationFunction = activation
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def hard_swish_decomposed(data: bytes) -> bytes | None:
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, operators, changed = root.subgraphs[0], [], False
    for op in graph.operators:
        if not _is(root, op, schema.BuiltinOperator.HARD_SWISH):
            operators.append(op)
            continue
        x = graph.tensors[op.inputs[0]]
        base = (x.name or b"x").decode("utf-8", "replace")
        ranges = _decomposed_ranges(_range(x))
        three = _scalar(root, graph, f"{base}/hard_swish/3", x, 3.0)
        sixth = _scalar(root, graph, f"{base}/hard_swish/1_6", x, 1.0 / 6.0)
        shifted, clipped, product = (
            _tensor(root, graph, f"{base}/hard_swish/{part}", x, *bounds)
            for part, bounds in zip(("add3", "relu6", "mul"), ranges)
        )
        relu6 = schema.OperatorT()
        relu6.opcodeIndex, relu6.inputs, relu6.outputs = _opcode(root, schema.BuiltinOperator.RELU6), [shifted], [clipped]
        operators += [
            _binary(
                root,
                schema.BuiltinOperator.ADD,
                schema.BuiltinOptions.AddOptions,
                schema.AddOptionsT,
                [op.inputs[0], three],
                shifted,
            ),
            relu6,
            _mul(root, [op.inputs[0], clipped], product),
            _mul(root, [product, sixth], op.outputs[0]),
        ]
        changed = True
    graph.operators = operators
    return _packed(root) if changed else None


def _mul(root, inputs: list[int], output: int, activation: int = 0):
    schema = _schema()
    return _binary(
        root, schema.BuiltinOperator.MUL, schema.BuiltinOptions.MulOptions, schema.MulOptionsT, inputs, output, activation
    )


def relu_as_fused_mul(data: bytes) -> bytes | None:
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, changed = root.subgraphs[0], False
    fused = {
        schema.BuiltinOperator.RELU: schema.ActivationFunctionType.RELU,
        schema.BuiltinOperator.RELU6: schema.ActivationFunctionType.RELU6,
        schema.BuiltinOperator.RELU_N1_TO_1: schema.ActivationFunctionType.RELU_N1_TO_1,
    }
    for i, op in enumerate(graph.operators):
        activation = next((a for builtin, a in fused.items() if _is(root, op, builtin)), None)
        if activation is None:
            continue
        x = graph.tensors[op.inputs[0]]
        one = _scalar(root, graph, f"{(x.name or b'x').decode('utf-8', 'replace')}/relu/1", x, 1.0)
        graph.operators[i] = _mul(root, [op.inputs[0], one], op.outputs[0], activation)
        changed = True
    return _packed(root) if changed else None


def average_pool_rewritten(data: bytes) -> bytes | None:
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, changed = root.subgraphs[0], False
    for op in graph.operators:
        if not _is(root, op, schema.BuiltinOperator.AVERAGE_POOL_2D):
            continue
        x, y, pool = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]], op.builtinOptions
        shape, out = list(x.shape if x.shape is not None else []), list(y.shape if y.shape is not None else [])
        if len(shape) != 4 or len(out) != 4 or pool.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        if out == [shape[0], 1, 1, shape[3]] and (pool.filterHeight, pool.filterWidth) == (shape[1], shape[2]):
            axes = _constant_tensor(root, graph, (x.name or b"x") + b"/mean/axes", np.array([1, 2], np.int32))
            options = schema.ReducerOptionsT()
            options.keepDims = True
            op.opcodeIndex, op.inputs = _opcode(root, schema.BuiltinOperator.MEAN), [op.inputs[0], axes]
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReducerOptions, options
        elif pool.padding == schema.Padding.VALID:
            area, channels = pool.filterHeight * pool.filterWidth, shape[3]
            weights = np.full((1, pool.filterHeight, pool.filterWidth, channels), 1.0 / area, np.float32)
            base = x.name or b"x"
            kernel = _constant_tensor(root, graph, base + b"/pool/weights", weights)
            bias = _constant_tensor(root, graph, base + b"/pool/bias", np.zeros(channels, np.float32))
            options = schema.DepthwiseConv2DOptionsT()
            options.padding, options.strideH, options.strideW = schema.Padding.VALID, pool.strideH, pool.strideW
            options.depthMultiplier, options.dilationHFactor, options.dilationWFactor = 1, 1, 1
            op.opcodeIndex, op.inputs = _opcode(root, schema.BuiltinOperator.DEPTHWISE_CONV_2D), [op.inputs[0], kernel, bias]
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.DepthwiseConv2DOptions, options
        else:
            continue
        changed = True
    return _packed(root) if changed else None


def _constant_tensor(root, graph, name: bytes, value: np.ndarray) -> int:
    schema = _schema()
    tensor = schema.TensorT()
    tensor.name, tensor.shape = name, list(value.shape)
    tensor.type = schema.TensorType.INT32 if value.dtype == np.int32 else schema.TensorType.FLOAT32
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value.tobytes(), np.uint8)
    root.buffers.append(buffer)
    tensor.buffer = len(root.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def prelu_decomposed(data: bytes) -> bytes | None:
    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, operators, changed = root.subgraphs[0], [], False
    relu = schema.ActivationFunctionType.RELU
    for op in graph.operators:
        alpha = _constant(root, graph.tensors[op.inputs[1]]) if _is(root, op, schema.BuiltinOperator.PRELU) else None
        if alpha is None or alpha.size == 0:
            operators.append(op)
            continue
        x = graph.tensors[op.inputs[0]]
        base = (x.name or b"x").decode("utf-8", "replace")
        one = _scalar(root, graph, f"{base}/prelu/1", x, 1.0)
        minus_one = _scalar(root, graph, f"{base}/prelu/-1", x, -1.0)
        positive, negative, scaled = (
            _tensor(root, graph, f"{base}/prelu/{part}", x, *bounds)
            for part, bounds in zip(("relu", "relu_neg", "scaled"), _prelu_ranges(_range(x), alpha))
        )
        operators += [
            _mul(root, [op.inputs[0], one], positive, relu),
            _mul(root, [op.inputs[0], minus_one], negative, relu),
            _mul(root, [negative, op.inputs[1]], scaled),
            _binary(
                root,
                schema.BuiltinOperator.SUB,
                schema.BuiltinOptions.SubOptions,
                schema.SubOptionsT,
                [positive, scaled],
                op.outputs[0],
            ),
        ]
        changed = True
    graph.operators = operators
    return _packed(root) if changed else None


def _prelu_ranges(seen: tuple[float, float] | None, alpha: np.ndarray) -> list[tuple[float | None, float | None]]:
    """The ranges of relu(x), relu(-x) and alpha * relu(-x), from x's calibrated range."""
    if seen is None:
        return [(None, None)] * 3
    lo, hi = seen
    ends = [float(a) * max(-lo, 0.0) for a in (alpha.min(), alpha.max())] + [0.0]
    return [(max(lo, 0.0), max(hi, 0.0)), (max(-hi, 0.0), max(-lo, 0.0)), (min(ends), max(ends))]


def _decomposed_ranges(seen: tuple[float, float] | None) -> list[tuple[float | None, float | None]]:
    """The ranges of x + 3, relu6 of it, and x times that, from x's calibrated range (none in an uncalibrated graph)."""
    if seen is None:
        return [(None, None)] * 3
    lo, hi = seen
    r_lo, r_hi = min(max(lo + 3, 0.0), 6.0), min(max(hi + 3, 0.0), 6.0)
    corners = [a * b for a in (lo, hi) for b in (r_lo, r_hi)] + [0.0]
    return [(lo + 3, hi + 3), (r_lo, r_hi), (min(corners), max(corners))]


@functools.lru_cache(maxsize=2)  # the search quantizes the same calibrated bytes once per candidate
def min_max_ranges_widened(data: bytes) -> tuple[bytes, list[str]]:
    """A calibrated graph whose MINIMUM and MAXIMUM outputs take the range of their input where it
    is wider; and those outputs' names. TensorFlow's quantizer gives these ops one scale for input
    and output and takes the output's: MINIMUM(x, 0)'s range [lo, 0] became x's, so every positive
    x was clipped to 0 (a Keras max(x, 0) + a * min(x, 0): INT8 at 0.14 dB, the plain converter
    0.48 dB). With the input's range the op's output only loses resolution."""
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    codes = [
        max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
        for i in range(model.OperatorCodesLength())
    ]
    wanted = {schema.BuiltinOperator.MINIMUM, schema.BuiltinOperator.MAXIMUM}
    if not wanted & set(codes):
        return data, []
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph, widened = root.subgraphs[0], []
    for op in graph.operators:
        if not any(_is(root, op, builtin) for builtin in wanted):
            continue
        out = graph.tensors[op.outputs[0]]
        seen = [r for r in (_range(graph.tensors[i]) for i in op.inputs if i >= 0) if r is not None]
        own = _range(out)
        if own is None or not seen:
            continue
        lo, hi = min([own[0]] + [r[0] for r in seen]), max([own[1]] + [r[1] for r in seen])
        if (lo, hi) != own:
            out.quantization.min, out.quantization.max = [lo], [hi]
            widened.append((out.name or b"").decode("utf-8", "replace"))
    return (_packed(root), widened) if widened else (data, [])


def rewrite(name: str, data: bytes) -> bytes | None:
    """The named rewrite of `data` (REWRITES), or None where it has nothing to rewrite."""
    return {
        "prelu_as_leaky_relu": prelu_as_leaky_relu,
        "hard_swish_decomposed": hard_swish_decomposed,
        "relu_as_fused_mul": relu_as_fused_mul,
        "prelu_decomposed": prelu_decomposed,
        "average_pool_rewritten": average_pool_rewritten,
    }[name](data)


def rewritten(data: bytes, names: tuple[str, ...]) -> bytes:
    """`data` with the named rewrites applied in order (a rewrite with nothing to do leaves it)."""
    for name in names:
        data = rewrite(name, data) or data
    return data
