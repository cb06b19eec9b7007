"""MediaPipe's Convolution2DTransposeBias rewritten as the built-in TRANSPOSE_CONV: the numpy
reference against TensorFlow's own transposed convolution, and a model with the custom op (made
from a Keras model's TRANSPOSE_CONV, as MediaPipe's exporter writes it) converted to strict int8
with the figures of the built-in original."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import convert, validate

from edgeq.tflite.mediapipe_ops import transposed_conv

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("padding, stride", [("SAME", 2), ("VALID", 2), ("SAME", 1), ("VALID", 3)])
def test_the_reference_is_tensorflows_transposed_convolution(padding, stride):
    import tensorflow as tf

    rng = np.random.default_rng(stride)
    x = rng.normal(size=(1, 5, 6, 3)).astype(np.float32)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)  # OHWI
    b = rng.normal(size=4).astype(np.float32)
    out = (1, 5 * stride, 6 * stride, 4) if padding == "SAME" else (1, 4 * stride + 3, 5 * stride + 3, 4)
    want = tf.nn.conv2d_transpose(x, w.transpose(1, 2, 0, 3), out, stride, padding).numpy() + b  # HWOI filter
    got = transposed_conv(x, w, b, out, (stride, stride), padding == "SAME")
    assert np.abs(got - want).max() < 1e-4


def _models(folder: Path) -> tuple[Path, Path, Path]:
    """A float .tflite with TRANSPOSE_CONV, the same with MediaPipe's custom op, and calibration data."""
    import flatbuffers
    import keras
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 4), batch_size=1, name="x")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(i)
    y = keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same", bias_initializer="random_normal")(h)
    data = tf.lite.TFLiteConverter.from_keras_model(keras.Model(i, keras.layers.Conv2D(2, 1)(y))).convert()
    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version = 32, 32, b"Convolution2DTransposeBias", 1
    root.operatorCodes.append(code)
    for op in root.subgraphs[0].operators:
        kind = root.operatorCodes[op.opcodeIndex]
        if max(kind.builtinCode, kind.deprecatedBuiltinCode) == schema.BuiltinOperator.TRANSPOSE_CONV:
            _, weights, x, bias = op.inputs
            op.opcodeIndex, op.inputs = len(root.operatorCodes) - 1, [x, weights, bias]
            op.builtinOptionsType, op.builtinOptions = 0, None
            op.customOptions = np.frombuffer(struct.pack("<3i", 1, 2, 2), np.uint8)  # same padding, strides 2, 2
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    (folder / "builtin.tflite").write_bytes(data)
    (folder / "custom.tflite").write_bytes(bytes(builder.Output()))
    np.save(folder / "x.npy", np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 4)).astype(np.float32))
    return folder / "builtin.tflite", folder / "custom.tflite", folder / "x.npy"


def test_a_model_with_the_custom_op_converts_to_strict_int8_as_its_builtin_twin(tmp_path):
    builtin, custom, data = _models(tmp_path)
    ours = convert(custom, tmp_path / "custom_int8.tflite", data, samples=64)
    twin = convert(builtin, tmp_path / "builtin_int8.tflite", data, samples=64)
    assert ours.manifest.source.rewrites and "Convolution2DTransposeBias" in ours.manifest.source.rewrites[0]
    assert "largest difference" in ours.manifest.source.rewrites[0]
    figures = [validate(m.output, builtin, data, runs=3, warmup=1).worst_sqnr_db for m in (ours, twin)]
    assert figures[0] == figures[1] and figures[0] > 30


def test_keep_float_of_the_custom_op_keeps_what_it_was_rewritten_to():
    """--keep-float Convolution2DTransposeBias in int8-fallback: the op is a TRANSPOSE_CONV by the
    time the quantizer sees it, and that is what stays in float (it was refused as unknown)."""
    from types import SimpleNamespace as NS

    from edgeq.conversion.quantize import resolve_keep_float

    graph = NS(
        tensors=[NS(name="x"), NS(name="segment"), NS(name="mask")],
        operators=[NS(index=0, type="TRANSPOSE_CONV", outputs=[1]), NS(index=1, type="LOGISTIC", outputs=[2])],
    )
    keep = resolve_keep_float(graph, ("Convolution2DTransposeBias",))
    assert keep.ops == ("TRANSPOSE_CONV",) and keep.per_name == {"Convolution2DTransposeBias": 1}
