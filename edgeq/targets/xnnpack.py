"""XNNPACK rule table (LiteRT's default CPU delegate: ARM NEON / dot-product, x86 AVX).

Sources:
- tensorflow/lite/delegates/xnnpack/README.md, "Limitations and supported operators": the
  floating-point and the quantized (signed int8, `qs8`) operator lists with their constraints,
  https://github.com/tensorflow/tensorflow/blob/master/tensorflow/lite/delegates/xnnpack/README.md
- Checked against the real delegate on this project's machine (LiteRT 2.3, tests/test_targets.py):
  int8 SOFTMAX and int8 HARD_SWISH stay on the built-in kernels; in dynamic-range models
  DEPTHWISE_CONV_2D with int8 weights stays too (CONV_2D and FULLY_CONNECTED are taken); float16
  weights behind a DEQUANTIZE of a constant count as static; float SIN and SUM are taken (newer than the README);
  ops on int32 tensors only (SUB, ADD, RESHAPE of index arithmetic) stay on the built-in kernels.
"""

from __future__ import annotations

from edgeq.targets import Op, Rule, TargetReport, fused, per_op, static_shapes
from edgeq.tflite.model import TfliteModel

SOURCES = ["https://github.com/tensorflow/tensorflow/blob/master/tensorflow/lite/delegates/xnnpack/README.md"]
ACTIVATION = fused("NONE", "RELU", "RELU_N1_TO_1", "RELU6")

FLOAT_OPS = set(
    "ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CEIL CONCATENATION CONV_2D DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV "
    "ELU FLOOR FULLY_CONNECTED GELU HARD_SWISH LEAKY_RELU LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG PAD PRELU "
    "QUANTIZE RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR ROUND RSQRT SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQRT SQUARE "
    "SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV".split()
)
INT8_OPS = set(
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE ELU FULLY_CONNECTED "
    "LEAKY_RELU LOGISTIC MAX_POOL_2D MEAN MUL PAD QUANTIZE RESHAPE RESIZE_BILINEAR SLICE SPACE_TO_DEPTH "
    "SPLIT STRIDED_SLICE SUB TANH TRANSPOSE TRANSPOSE_CONV".split()
)
FUSED = {"ADD", "SUB", "MUL", "DIV", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D"}


def kernel_type(op: Op) -> str | None:
    """Float ops need a float32 kernel, quantized ops a signed-int8 one."""
    dtypes = {t.dtype for t in op.activations()}
    if op.type in ("QUANTIZE", "DEQUANTIZE"):
        return None if dtypes <= {"float32", "int8"} else f"converts {'/'.join(sorted(dtypes))}"
    if "float32" in dtypes:
        return None if op.type in FLOAT_OPS else "has no float32 XNNPACK kernel"
    if dtypes == {"int32"}:
        return "computes on int32 tensors only (index arithmetic), which XNNPACK does not take"
    if dtypes <= {"int8", "int32"}:
        return None if op.type in INT8_OPS else "has no int8 XNNPACK kernel (it runs on LiteRT's built-in int8 kernel)"
    return f"has {'/'.join(sorted(dtypes))} tensors, which XNNPACK does not take"


def softmax_beta(op: Op) -> str | None:
    return None if op.options.get("Beta", 1.0) == 1.0 else "uses beta != 1.0"


def static_weights(op: Op) -> str | None:
    """Weights must be constants; a float16 constant behind a DEQUANTIZE counts as one."""
    inputs = op.inputs()
    if len(inputs) < 2 or inputs[1].is_constant:
        return None
    producer = op.model.producers.get(inputs[1].index)
    if producer is not None and producer.type == "DEQUANTIZE" and op.model.tensors[producer.inputs[0]].is_constant:
        return None
    return "has non-constant weights"


def hybrid_depthwise(op: Op) -> str | None:
    """Dynamic-range (float activations, int8 weights) depthwise convolutions are not taken."""
    inputs = op.inputs()
    if len(inputs) > 1 and inputs[1].dtype == "int8" and inputs[0].dtype == "float32":
        return "is a dynamic-range depthwise convolution (float activations, int8 weights)"
    return None


RULES: dict[str, Rule] = {
    op: Rule(
        tuple(
            c
            for c in (
                ACTIVATION if op in FUSED else None,
                static_weights if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") else None,
                softmax_beta if op == "SOFTMAX" else None,
                hybrid_depthwise if op == "DEPTHWISE_CONV_2D" else None,
            )
            if c
        )
    )
    for op in FLOAT_OPS | INT8_OPS
}


REQUANTIZED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
MAX_REQUANTIZATION = 256.0


def unloadable(model: TfliteModel) -> list[tuple[int, str, str, float]]:
    """The int8 ops XNNPACK takes but cannot create, and with them the model (LiteRT with XNNPACK,
    its default, refuses to load it: "failed to create XNNPACK runtime"): XNNPACK's qs8
    convolutions and fully-connected operators refuse an input scale x weight scale / output scale
    of 256 or more (src/operators/convolution-nhwc.c, fully-connected-nc.c). TensorFlow's converter
    writes such ops where a layer's output range is far narrower than its input's times its weights'
    (an input that shares a huge range through a CONCATENATION). Each: (op index, type, node, ratio)."""
    found = []
    for op in model.operators:
        data = 2 if op.type == "TRANSPOSE_CONV" else 0  # its inputs: output shape, weights, data
        if (
            op.type not in REQUANTIZED
            or len(op.inputs) <= max(data, 1)
            or min(op.inputs[data], op.inputs[1]) < 0
            or not op.outputs
        ):
            continue
        x, w, y = (model.tensors[i] for i in (op.inputs[data], op.inputs[1], op.outputs[0]))
        if {x.dtype, w.dtype, y.dtype} != {"int8"} or not (x.quantization and w.quantization and y.quantization):
            continue
        ratio = x.quantization.scales[0] * max(w.quantization.scales) / y.quantization.scales[0]
        if ratio >= MAX_REQUANTIZATION:
            found.append((op.index, op.type, y.name, ratio))
    return found


def check(model: TfliteModel) -> TargetReport:
    findings = per_op(model, RULES, (kernel_type, static_shapes), "XNNPACK")
    refused = {index: ratio for index, _, _, ratio in unloadable(model)}
    for f in findings:
        if f.index in refused:
            f.on_target = False
            f.reason = (
                f"cannot be created by XNNPACK (input scale x weight scale / output scale {refused[f.index]:,.0f}, it takes "
                "under 256), so LiteRT with XNNPACK loads no part of the model; keep it in float"
            )
    cpu = [f for f in findings if not f.on_target]
    on = len(findings) - len(cpu)
    verdict = (
        f"XNNPACK cannot load this model: {len(refused)} int8 op(s) it cannot create (input scale x weight scale / "
        "output scale of 256 or more); keep them in float"
        if refused
        else f"every op runs on XNNPACK ({on} ops)"
        if not cpu
        else f"{on} of {len(findings)} ops on XNNPACK; {', '.join(sorted({f.type for f in cpu}))} on built-in kernels"
    )
    return TargetReport(
        target="xnnpack",
        title="XNNPACK",
        verdict=verdict,
        ops=findings,
        first_unsupported_op=cpu[0] if cpu else None,
        notes=["Ops XNNPACK leaves run on LiteRT's built-in kernels in between, each boundary costing a partition switch."],
        sources=SOURCES,
        fallback="LiteRT's built-in kernels",
    )
