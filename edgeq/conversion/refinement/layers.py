"""The INT8 graph's weighted layers (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with int8
weights, an int8 input and an int32 bias), each with its float twin in the calibrated graph;
writable views of their weights and biases inside the file's bytes; and a graph run on XNNPACK
that shows chosen tensors (dequantized) sample by sample. What --refine bias and rounding share.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class WeightedLayer:
    """One weighted op of the INT8 graph and what its refinement needs."""

    kind: str
    name: str
    position: int  # operator index in the INT8 graph
    input: int  # its int8 input tensor
    twin_input: int  # the same input in the calibrated float graph
    weights: np.ndarray  # float weights, one row per output channel (depthwise: the kernel window)
    bias: np.ndarray  # float bias per output channel
    scales: np.ndarray  # weight scale per output channel
    bias_scales: np.ndarray  # int32 bias scale per output channel
    weight_buffer: int
    bias_buffer: int
    input_scale: float
    input_zero: int
    output_scale: float = 1.0
    positions: int = 1  # output rows per sample (positions x batch)
    upstream: frozenset[int] = frozenset()  # positions of the weighted ops whose outputs reach its input
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    same: bool = False
    multiplier: int = 1  # depthwise: output channels per input channel

    @property
    def columns(self) -> int:
        return self.weights.shape[1]


def weighted_layers(quantized: bytes, calibrated: bytes) -> tuple[list[WeightedLayer], list[str]]:
    """The INT8 graph's weighted layers that have int8 weights, an int8 input, an int32 bias of
    their own (no buffer shared with another tensor) and a float twin in the calibrated graph; and
    why the others were left."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.tflite.model import parse_tflite

    floating = parse_tflite(calibrated, "the calibrated graph")
    model = parse_tflite(quantized)
    twins = _twins(floating, model)
    upstream = _upstream(model)
    root = schema.ModelT.InitFromPackedBuf(bytearray(quantized), 0)
    graph = root.subgraphs[0]
    uses = Counter(t.buffer for g in root.subgraphs for t in g.tensors if t.buffer)  # tensors per buffer
    reads = Counter(i for op in graph.operators for i in op.inputs if i >= 0)  # ops per tensor
    layers, skipped = [], []
    for position, (op, parsed) in enumerate(zip(graph.operators, model.operators)):
        if parsed.type not in WEIGHTED or not parsed.outputs:
            continue
        name = model.tensors[parsed.outputs[0]].name
        twin = twins.get(position)
        tensors = [graph.tensors[i] if i >= 0 else None for i in op.inputs[:3]]
        if twin is None or len(tensors) < 3 or None in tensors:
            skipped.append(f"{name}: {'no float twin in the calibrated graph' if twin is None else 'no bias tensor to refit'}")
            continue
        x, w, b = tensors
        if list(floating.tensors[twin.inputs[0]].shape) != list(model.tensors[parsed.inputs[0]].shape):
            skipped.append(f"{name}: its float twin reads an input of another shape")
            continue
        if uses[w.buffer] > 1 or uses[b.buffer] > 1 or reads[op.inputs[1]] > 1 or reads[op.inputs[2]] > 1:
            skipped.append(f"{name}: its weights or bias are shared with another op or tensor")
            continue
        if (x.type, w.type, b.type) != (schema.TensorType.INT8, schema.TensorType.INT8, schema.TensorType.INT32):
            skipped.append(f"{name}: not an int8 layer with an int32 bias")
            continue
        w_f, b_f = (
            floating.constant(twin.inputs[1]),
            floating.constant(twin.inputs[2]) if len(twin.inputs) > 2 and twin.inputs[2] >= 0 else None,
        )
        if w_f is None or x.quantization is None or not len(x.quantization.scale or []):
            skipped.append(f"{name}: no float weights or no input scale")
            continue
        layer = _layer(parsed.type, name, position, op, twin, np.asarray(w_f, np.float64), b_f, w, b, x)
        if isinstance(layer, str):
            skipped.append(f"{name}: {layer}")
        else:
            out = model.tensors[parsed.outputs[0]]
            scale = out.quantization.scales[0] if out.quantization and out.quantization.scales else 1.0
            layers.append(
                replace(
                    layer, positions=max(1, int(np.prod(out.shape[:-1]))), upstream=upstream[position], output_scale=float(scale)
                )
            )
    return layers, skipped


def unshared(quantized: bytes) -> bytes:
    """`quantized` with its own buffer for every weight and bias tensor that shares one with
    another tensor (the converter stores equal constants once: two BatchNorm-folded biases of the
    same values are one buffer), so refining one layer cannot change another. Unchanged bytes
    when nothing is shared."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(quantized), 0)
    uses = Counter(t.buffer for g in root.subgraphs for t in g.tensors if t.buffer)
    copied = 0
    for graph in root.subgraphs:
        for op in graph.operators:
            for index in op.inputs[1:3]:
                tensor = graph.tensors[index] if index >= 0 else None
                if tensor is None or not tensor.buffer or uses[tensor.buffer] < 2:
                    continue
                own = schema.BufferT()
                own.data = np.array(root.buffers[tensor.buffer].data, copy=True)
                uses[tensor.buffer] -= 1
                root.buffers.append(own)
                tensor.buffer, copied = len(root.buffers) - 1, copied + 1
    if not copied:
        return quantized
    builder = flatbuffers.Builder(len(quantized) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _upstream(model) -> list[frozenset[int]]:
    """For each op, the weighted ops (by position) whose outputs reach its inputs."""
    made_by = {t: i for i, op in enumerate(model.operators) for t in op.outputs}
    found: list[frozenset[int]] = []
    for op in model.operators:
        reach: set[int] = set()
        for t in op.inputs:
            if t in made_by:
                p = made_by[t]
                reach |= found[p] | ({p} if model.operators[p].type in WEIGHTED else set())
        found.append(frozenset(reach))
    return found


def _twins(floating, model) -> dict:
    """The calibrated graph's op for each weighted op of the INT8 graph: by output name first (the
    INT8 name may fuse the activation's, 're_lu_12;conv2d_29'), with equal weight shapes; the rest by
    position among the rest, where their kinds and weight shapes all agree (the quantizer may rename
    a graph output's tensor). Position alone is not enough: the quantizer may swap two independent
    ops of the same shape (MediaPipe's selfie segmentation: conv2d_29 and conv2d_30)."""
    mine = [(i, op) for i, op in enumerate(model.operators) if op.type in WEIGHTED and op.outputs]
    theirs = [op for op in floating.operators if op.type in WEIGHTED and op.outputs]

    def alike(a, b) -> bool:
        return a.type == b.type and model.tensors[a.inputs[1]].shape == floating.tensors[b.inputs[1]].shape

    named = {floating.tensors[op.outputs[0]].name: op for op in theirs}
    twins: dict[int, Any] = {}
    for i, a in mine:
        name = model.tensors[a.outputs[0]].name
        twin = next((named[part] for part in (name, *name.split(";")) if part in named), None)
        if twin is not None and alike(a, twin) and all(twin is not t for t in twins.values()):
            twins[i] = twin
    rest = [(i, a) for i, a in mine if i not in twins]
    left = [b for b in theirs if all(b is not t for t in twins.values())]
    if len(rest) == len(left) and all(alike(a, b) for (_, a), b in zip(rest, left)):
        twins.update({i: b for (i, _), b in zip(rest, left)})
    return twins


def _layer(kind, name, position, op, twin, w_f, b_f, w, b, x) -> WeightedLayer | str:
    channels = w_f.shape[3] if kind == "DEPTHWISE_CONV_2D" else w_f.shape[0]
    if len(w.quantization.scale) not in (1, channels) or len(b.quantization.scale) not in (1, channels):
        return "weight or bias scales do not match its channels"
    scales = np.broadcast_to(np.asarray(w.quantization.scale, np.float64), (channels,)).copy()
    bias_scales = np.broadcast_to(np.asarray(b.quantization.scale, np.float64), (channels,)).copy()
    bias = np.zeros(channels) if b_f is None else np.asarray(b_f, np.float64).reshape(-1)
    if bias.size != channels:
        return f"{bias.size} bias values for {channels} channels"
    common = dict(
        kind=kind,
        name=name,
        position=position,
        input=op.inputs[0],
        twin_input=twin.inputs[0],
        bias=bias,
        scales=scales,
        bias_scales=bias_scales,
        weight_buffer=w.buffer,
        bias_buffer=b.buffer,
        input_scale=float(x.quantization.scale[0]),
        input_zero=int(x.quantization.zeroPoint[0]),
    )
    if kind == "FULLY_CONNECTED":
        return WeightedLayer(weights=w_f.reshape(channels, -1), **common)
    options = op.builtinOptions
    geometry = dict(
        kernel=tuple(w_f.shape[1:3]),
        stride=(options.strideH, options.strideW),
        dilation=(options.dilationHFactor, options.dilationWFactor),
        same=options.padding == 0,
    )
    if kind == "CONV_2D":
        return WeightedLayer(weights=w_f.reshape(channels, -1), **geometry, **common)
    return WeightedLayer(
        weights=w_f[0].reshape(-1, channels).T.copy(), multiplier=max(1, options.depthMultiplier), **geometry, **common
    )


class Run:
    """A graph on XNNPACK, run sample by sample: the float values of chosen tensors (dequantized
    where int8)."""

    def __init__(self, model: bytes, samples: list[list[np.ndarray]], threads: int):
        from ai_edge_litert.interpreter import Interpreter

        from edgeq.conversion.calibration.observed import allocated

        self.interpreter = allocated(Interpreter(model_content=model, num_threads=threads), [np.shape(a) for a in samples[0]])
        self.inputs = self.interpreter.get_input_details()
        self.scales = {d["index"]: d["quantization"] for d in self.interpreter.get_tensor_details()}

    def values(self, sample: list[np.ndarray], tensors: list[int]) -> dict[int, np.ndarray]:
        for detail, array in zip(self.inputs, sample):
            self.interpreter.set_tensor(detail["index"], _fed(np.asarray(array, np.float32), detail))
        self.interpreter.invoke()
        found = {}
        for index in tensors:
            value = self.interpreter.get_tensor(index)
            scale, zero = self.scales.get(index, (0.0, 0))
            found[index] = (
                (value.astype(np.float32) - zero) * np.float32(scale)
                if value.dtype != np.float32 and scale
                else value.astype(np.float32, copy=False)
            )
        return found


def _fed(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return array.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(array / scale) + zero, info.min, info.max).astype(detail["dtype"])


def buffers(data: bytearray, layer: WeightedLayer) -> tuple[np.ndarray, np.ndarray]:
    """Writable views of the layer's int8 weights and int32 bias inside the file's bytes."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(data, 0)
    weights = root.Buffers(layer.weight_buffer).DataAsNumpy().view(np.int8)
    bias = root.Buffers(layer.bias_buffer).DataAsNumpy().view(np.int32)
    return weights, bias
