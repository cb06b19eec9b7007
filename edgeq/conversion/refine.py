"""--refine bias: the mean output shift that rounding each weight to its int8 step causes, taken
out of the int32 bias of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in the INT8 file.

For a layer y = W x + b quantized to W_q (per-channel scales s_w), the rounding error
dW = s_w W_q - W shifts each output channel's mean by dW . E[x], where E[x] is the mean of the
layer's float input over the calibration samples, per input channel (convolutions: over the
positions too) or per feature (FULLY_CONNECTED). That shift is subtracted from the bias, in its
own scale (s_in s_w). Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and
Bias Correction", section 4.2, with E[x] measured on the calibration samples instead of taken
from BatchNorm statistics. The scales, zero-points and everything else in the file stay as the
converter wrote them; only bias values change.
"""

from __future__ import annotations

import warnings
import numpy as np

from edgeq.records.manifest import Refinement

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def input_means(calibrated: bytes, samples: list[list[np.ndarray]], tensors: list[int]) -> dict[int, np.ndarray]:
    """The mean of each float tensor in `tensors` over the samples: per channel (last axis) for a
    4-D activation, per feature for anything else (flattened past the batch)."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors "is intended for debugging": it is
        interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    sums: dict[int, np.ndarray] = {}
    for sample in samples:
        for detail, array in zip(interpreter.get_input_details(), sample):
            interpreter.set_tensor(detail["index"], np.asarray(array, np.float32).reshape(detail["shape"]))
        interpreter.invoke()
        for t in tensors:
            value = interpreter.get_tensor(t).astype(np.float64)
            mean = value.reshape(-1, value.shape[-1]).mean(0) if value.ndim == 4 else value.reshape(value.shape[0], -1).mean(0)
            sums[t] = sums.get(t, 0) + mean
    return {t: s / max(1, len(samples)) for t, s in sums.items()}


def bias_corrected(quantized: bytes, calibrated: bytes, samples: list[list[np.ndarray]]) -> tuple[bytes, Refinement]:
    """`quantized` with every weighted layer's weight-rounding shift taken out of its bias."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgeq.tflite.model import parse_tflite

    floating = parse_tflite(calibrated, "the calibrated graph")
    by_output = {floating.tensors[op.outputs[0]].name: op for op in floating.operators if op.type in WEIGHTED and op.outputs}
    root = schema.ModelT.InitFromPackedBuf(bytearray(quantized), 0)
    graph = root.subgraphs[0]
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    layers = []
    for op in graph.operators:
        code = root.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        out = graph.tensors[op.outputs[0]]
        twin = by_output.get((out.name or b"").decode("utf-8", "replace"))
        if kind in WEIGHTED and twin is not None and len(op.inputs) > 2 and op.inputs[2] >= 0:
            layers.append((kind, op, twin))
    means = input_means(calibrated, samples, sorted({twin.inputs[0] for _, _, twin in layers}))
    corrected, largest, skipped = 0, 0.0, []
    for kind, op, twin in layers:
        reason = _correct(root, graph, kind, op, floating, twin, means[twin.inputs[0]])
        if isinstance(reason, str):
            skipped.append(f"{(graph.tensors[op.outputs[0]].name or b'').decode('utf-8', 'replace')}: {reason}")
            continue
        corrected, largest = corrected + 1, max(largest, reason)
    builder = flatbuffers.Builder(len(quantized) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), Refinement("bias", corrected, len(samples), round(largest, 3), tuple(skipped))


def _correct(root, graph, kind: str, op, floating, twin, mean: np.ndarray) -> float | str:
    """Correct one layer's bias in place; the largest shift in output steps, or why not."""
    weights, bias, out = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]], graph.tensors[op.outputs[0]]
    w_q = np.frombuffer(bytes(bytearray(root.buffers[weights.buffer].data)), np.int8).reshape(weights.shape).astype(np.float64)
    w_f = floating.constant(twin.inputs[1])
    raw_bias = root.buffers[bias.buffer].data
    if w_f is None or raw_bias is None or len(raw_bias) == 0 or weights.quantization is None or bias.quantization is None:
        return "no float weights or no int32 bias to correct"
    axis = 3 if kind == "DEPTHWISE_CONV_2D" else 0
    scales = np.asarray(weights.quantization.scale, np.float64)
    shape = [1] * w_q.ndim
    shape[axis] = -1
    delta = w_q * (scales.reshape(shape) if scales.size > 1 else scales[0]) - np.asarray(w_f, np.float64).reshape(w_q.shape)
    if kind == "CONV_2D":
        shift = np.einsum("ohwi,i->o", delta, mean)
    elif kind == "DEPTHWISE_CONV_2D":
        multiplier = delta.shape[3] // mean.size
        shift = delta.sum(axis=(0, 1, 2)) * np.repeat(mean, multiplier)
    else:
        if mean.size != delta.shape[1]:
            return f"input of {mean.size} features for {delta.shape[1]} weight columns"
        shift = delta @ mean
    b_scale = np.asarray(bias.quantization.scale, np.float64)
    values = np.frombuffer(bytes(bytearray(raw_bias)), np.int32).astype(np.int64)
    if b_scale.size not in (1, values.size):
        return "bias scales do not match its channels"
    steps = np.round(shift / b_scale).astype(np.int64)
    new = np.clip(values - steps, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    root.buffers[bias.buffer].data = np.frombuffer(new.tobytes(), np.uint8)
    out_scale = float(out.quantization.scale[0]) if out.quantization is not None and out.quantization.scale is not None else 1.0
    return float(np.abs(shift).max() / out_scale) if shift.size else 0.0
