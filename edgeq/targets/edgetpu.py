"""Edge TPU rule table (Coral USB Accelerator, Dev Board, M.2/PCIe).

Sources:
- Coral, "TensorFlow models on the Edge TPU": model requirements and the supported-operations
  table with each op's known limitations, https://coral.ai/docs/edgetpu/models-intro/
- Coral, "Edge TPU Compiler": the compiler maps ops to the Edge TPU in execution order up to the
  first op it cannot map; that op and everything after it run on the CPU,
  https://coral.ai/docs/edgetpu/compiler/
- google-coral/edgetpu issues #187, #396, #420: RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR with
  half_pixel_centers (op version 3+) log "Operation version not supported" (compilers 14-15).
"""

from __future__ import annotations

from edgeq.targets import Op, Rule, TargetReport, fused, half_pixel_centers, no_batch_axis, per_op, static_shapes
from edgeq.tflite.model import TfliteModel

SOURCES = [
    "https://coral.ai/docs/edgetpu/models-intro/#supported-operations",
    "https://coral.ai/docs/edgetpu/compiler/",
    "https://github.com/google-coral/edgetpu/issues/187",
]
QUANTIZED = ("int8", "uint8")


def quantized_tensors(op: Op) -> str | None:
    """'Tensor parameters are quantized (8-bit fixed-point numbers; int8 or uint8)'; int32 biases
    and shape operands are constants the compiler folds."""
    floats = [t for t in op.activations() if t.dtype not in QUANTIZED]
    if floats:
        return f"has a {floats[0].dtype} tensor ({floats[0].name}); the Edge TPU runs only int8/uint8"
    weights = [t for t in op.inputs() if t.is_constant and t.dtype not in QUANTIZED + ("int32",)]
    return f"has {weights[0].dtype} constants ({weights[0].name})" if weights else None


def three_innermost(op: Op) -> str | None:
    """'If a tensor has more than 3 dimensions, only the 3 innermost dimensions may have a size greater than 1.'"""
    for t in op.activations():
        if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return f"has a tensor of shape {list(t.shape)}: only the 3 innermost dimensions may exceed 1"
    return None


def constant_weights(op: Op) -> str | None:
    """'Model parameters (such as bias tensors) are constant at compile-time.'"""
    inputs = op.inputs()
    return "has non-constant weights" if len(inputs) > 1 and not inputs[1].is_constant else None


def same_dilation(op: Op) -> str | None:
    o = op.options
    return None if o.get("DilationWFactor", 1) == o.get("DilationHFactor", 1) else "uses different dilations in x and y"


def concatenation(op: Op) -> str | None:
    if op.fused_activation() != "NONE":
        return f"has a fused {op.fused_activation()} activation"
    constants = [t for t in op.inputs() if t.is_constant]
    if constants and len(op.inputs()) != 2:
        return "has a constant input and more than 2 inputs (only a 2-input zero-padding concat is supported)"
    return None


def fully_connected(op: Op) -> str | None:
    if op.options.get("WeightsFormat", 0) != 0:
        return "uses a non-default weights format"
    out = op.outputs()[0].shape
    return f"has an output of shape {list(out)}; the output must be one-dimensional" if sum(d > 1 for d in out) > 1 else None


def softmax(op: Op) -> str | None:
    shape = op.inputs()[0].shape
    size = 1
    for d in shape:
        size *= d
    if sum(d > 1 for d in shape) > 1:
        return f"has a {len(shape)}-D input {list(shape)}; only a 1-D input is supported"
    return f"has {size} elements; at most 16,000 are supported" if size > 16000 else None


def strided_slice(op: Op) -> str | None:
    strides = op.constant(3)
    if strides is None or any(int(s) != 1 for s in strides.ravel()):
        return "has strides other than 1 (only an all-ones stride is supported)"
    if op.options.get("EllipsisMask", 0) or op.options.get("NewAxisMask", 0):
        return "uses an ellipsis or new-axis mask"
    return None


def pad_no_batch(op: Op) -> str | None:
    paddings = op.constant(1)
    if paddings is None:
        return "has non-constant paddings"
    return "pads the batch dimension" if paddings.size and any(int(p) for p in paddings.reshape(-1, 2)[0]) else None


def resize(op: Op) -> str | None:
    reason = half_pixel_centers(op)
    return reason and f"{reason} (op version {op.op.version}); the compiler reports 'Operation version not supported'"


NO_ACTIVATION = fused("NONE")
RULES: dict[str, Rule] = {
    "ADD": Rule(),
    "SUB": Rule(),
    "MUL": Rule(),
    "MAXIMUM": Rule(),
    "MINIMUM": Rule(),
    "AVERAGE_POOL_2D": Rule((NO_ACTIVATION,)),
    "MAX_POOL_2D": Rule((NO_ACTIVATION,)),
    "CONCATENATION": Rule((concatenation,)),
    "CONV_2D": Rule((constant_weights, same_dilation)),
    "DEPTHWISE_CONV_2D": Rule((constant_weights, same_dilation)),
    "TRANSPOSE_CONV": Rule(),
    "FULLY_CONNECTED": Rule((constant_weights, fully_connected)),
    "EXPAND_DIMS": Rule(),
    "SQUEEZE": Rule(),
    "RESHAPE": Rule(),
    "L2_NORMALIZATION": Rule(),
    "LOGISTIC": Rule(),
    "TANH": Rule(),
    "RELU": Rule(),
    "RELU6": Rule(),
    "RELU_N1_TO_1": Rule(),
    "PRELU": Rule(),
    "LSTM": Rule(),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": Rule(),
    "MEAN": Rule((no_batch_axis(1, "reduces"),)),
    "SUM": Rule((no_batch_axis(1, "reduces"),)),
    "REDUCE_MAX": Rule((no_batch_axis(1, "reduces"),)),
    "REDUCE_MIN": Rule((no_batch_axis(1, "reduces"),)),
    "PACK": Rule(),
    "PAD": Rule((pad_no_batch,)),
    "QUANTIZE": Rule(),
    "RESIZE_BILINEAR": Rule((resize,)),
    "RESIZE_NEAREST_NEIGHBOR": Rule((resize,)),
    "RSQRT": Rule(),
    "SLICE": Rule(),
    "SOFTMAX": Rule((softmax,)),
    "SPACE_TO_DEPTH": Rule(),
    "SPLIT": Rule((no_batch_axis(0, "splits"),)),
    "SQUARED_DIFFERENCE": Rule(),
    "STRIDED_SLICE": Rule((strided_slice,)),
    "TRANSPOSE": Rule(),
}
COMMON = (quantized_tensors, static_shapes, three_innermost)


def check(model: TfliteModel) -> TargetReport:
    findings = per_op(model, RULES, COMMON, "the Edge TPU")
    boundary = {o.index for o in model.operators if Op(model, o).is_model_boundary()}
    first = next((f for f in findings if not f.on_target and f.index not in boundary), None)
    if first is not None:  # one Edge TPU subgraph: everything from the first unmapped op runs on the CPU
        for f in findings:
            if f.index > first.index and f.on_target:
                f.on_target, f.reason = False, f"follows op {first.index} ({first.type}), which the Edge TPU cannot run"
    for f in findings:
        if f.index in boundary:
            f.on_target, f.reason = False, "converts the model's float input/output; runs on the CPU at the graph's edge"
    quantized = any(model.op_precision(o) == "int8" for o in model.operators)
    notes = ["A model must be compiled with edgetpu_compiler before the Edge TPU runs it."]
    if not quantized:
        verdict = "not quantized: the Edge TPU runs only full-integer models; convert with edgeq convert --mode int8"
    elif first is None:
        verdict = f"every op maps to the Edge TPU ({len(findings) - len(boundary)} ops)"
    else:
        on = sum(f.on_target for f in findings)
        verdict = f"{on} of {len(findings)} ops on the Edge TPU; the CPU runs the rest from op {first.index} ({first.type}) on"
    return TargetReport(
        target="edgetpu",
        title="Edge TPU",
        verdict=verdict,
        ops=findings,
        first_unsupported_op=first,
        notes=notes,
        sources=SOURCES,
    )
