"""NNAPI rule table (Android Neural Networks API through LiteRT's NNAPI delegate).

Sources:
- Android NDK, Neural Networks API operation reference: each ANEURALNETWORKS_* operation states
  the NNAPI feature level / Android API level it was introduced in,
  https://developer.android.com/ndk/reference/group/neural-networks
  (API 27 = NNAPI 1.0, 28 = 1.1, 29 = 1.2, 30 = 1.3).
- TENSOR_QUANT8_ASYMM_SIGNED (the int8 of full-integer models) and the align_corners /
  half_pixel_centers resize parameters arrived with NNAPI 1.3 (API 30); tensorflow/tensorflow
  issue #45207 shows half_pixel_centers resizes staying on the CPU before that.
- NeuralNetworksTypes.h: BATCH_MATMUL and PACK are NNAPI feature level 6, MIRROR_PAD and REVERSE
  feature level 7 (mapped here to Android 13 / API 33 and Android 14 / API 34).
- NNAPI is deprecated from Android 15 (API 35): https://developer.android.com/ndk/guides/neuralnetworks/migration-guide
"""

from __future__ import annotations

from edgeq.targets import Op, Rule, TargetReport, half_pixel_centers, per_op, static_shapes
from edgeq.tflite.model import TfliteModel

SOURCES = [
    "https://developer.android.com/ndk/reference/group/neural-networks",
    "https://developer.android.com/ndk/guides/neuralnetworks/migration-guide",
    "https://github.com/tensorflow/tensorflow/issues/45207",
]
DEPRECATED_API = 35
SIGNED_INT8_API = 30

_BY_API = {
    27: "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR "
    "FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC "
    "LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX "
    "SPACE_TO_DEPTH SVDF TANH",
    28: "BATCH_TO_SPACE_ND DIV MEAN PAD SPACE_TO_BATCH_ND SQUEEZE STRIDED_SLICE SUB TRANSPOSE",
    29: "ABS ARG_MAX ARG_MIN CAST EQUAL EXP EXPAND_DIMS GATHER GREATER GREATER_EQUAL LEAKY_RELU LESS LESS_EQUAL LOG "
    "LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOG_SOFTMAX MAXIMUM MINIMUM NEG NOT_EQUAL PAD_V2 POW PRELU QUANTIZE "
    "REDUCE_MAX REDUCE_MIN REDUCE_PROD RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SIN SLICE SPLIT SQRT SUM TILE TOPK_V2 "
    "TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNIDIRECTIONAL_SEQUENCE_RNN",
    30: "ELU FILL HARD_SWISH RANK",
    33: "BATCH_MATMUL PACK",  # NNAPI feature level 6 (the NNAPI update shipped with Android 13)
    34: "MIRROR_PAD REVERSE",  # NNAPI feature level 7 (Android 14)
}


def rank_at_most_4(op: Op) -> str | None:
    big = [t for t in op.activations() if len(t.shape) > 4]
    return f"has a {len(big[0].shape)}-D tensor; NNAPI operations take at most 4 dimensions" if big else None


RULES: dict[str, Rule] = {op: Rule(min_api=api) for api, names in _BY_API.items() for op in names.split()}


def _op_api(op: Op, base: int) -> int:
    """The API level this op needs with its types and options, not just its type."""
    api = base
    if any(t.dtype == "int8" for t in op.activations()):
        api = max(api, SIGNED_INT8_API)
    if op.type.startswith("RESIZE_") and half_pixel_centers(op):
        api = max(api, SIGNED_INT8_API)
    return api


def check(model: TfliteModel) -> TargetReport:
    findings = per_op(model, RULES, (static_shapes, rank_at_most_4), "NNAPI")
    for f in findings:
        if f.on_target:
            f.min_api = _op_api(Op(model, model.operators[f.index]), f.min_api or 27)
    needed = max((f.min_api or 27 for f in findings if f.on_target), default=27)
    first = next((f for f in findings if not f.on_target), None)
    on = sum(f.on_target for f in findings)
    verdict = (
        (
            f"{on} of {len(findings)} ops map to NNAPI from Android API {needed}; the delegate runs unsupported ops "
            f"on the CPU in separate partitions"
        )
        if first
        else f"every op maps to NNAPI from Android API {needed}"
    )
    notes = [
        f"NNAPI is deprecated from Android 15 (API {DEPRECATED_API}): plan a LiteRT GPU or NPU delegate for new devices.",
        f"Signed int8 tensors need NNAPI 1.3 (Android 11, API {SIGNED_INT8_API}); older devices run those ops on the CPU.",
        "Whether a vendor driver accelerates an op, or falls back to NNAPI's CPU path, is only known on the device.",
    ]
    return TargetReport(
        target="nnapi",
        title="NNAPI",
        verdict=verdict,
        ops=findings,
        first_unsupported_op=first,
        notes=notes,
        sources=SOURCES,
        extra={"min_android_api": needed, "deprecated_from_api": DEPRECATED_API},
    )
