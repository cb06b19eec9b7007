"""Float .tflite files as other tools write them: sparse weights behind DENSIFY ops, the LiteRT
converter's keep_stablehlo_constant entry (litert-torch). Each converts to full int8 and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES, convert, validate

from edgeq.tflite.model import read_tflite
from edgeq.tflite.sparse_weights import densify_weights

pytestmark = pytest.mark.tf
TFLITE = FIXTURES / "tflite"


@pytest.fixture(scope="module")
def sparse_tflite(tmp_path_factory) -> Path:
    """A pruned CNN (80 % zeros) converted by TensorFlow with EXPERIMENTAL_SPARSITY: DENSIFY ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten()(keras.layers.Conv2D(16, 3, padding="same", activation="relu")(image))
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(x))
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0
            layer.set_weights([kernel, *weights[1:]])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    path = tmp_path_factory.mktemp("sparse") / "pruned.tflite"
    path.write_bytes(converter.convert())
    return path


def test_densified_weights_compute_what_the_sparse_model_computes(sparse_tflite):
    from ai_edge_litert.interpreter import Interpreter

    sparse = sparse_tflite.read_bytes()
    assert [op.type for op in read_tflite(sparse_tflite).operators].count("DENSIFY") == 2
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype(np.float32)
    outputs = []
    for model in (sparse, densify_weights(sparse)):
        interpreter = Interpreter(model_content=model)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(*outputs)


def test_a_sparse_model_converts_to_strict_int8_loads_and_validates(sparse_tflite, digits_calib, tmp_path):
    result = convert(sparse_tflite, tmp_path / "pruned_int8.tflite", digits_calib, samples=32)
    assert not result.manifest.float_ops  # strict int8 (the shape ops of its dynamic batch stay int32)
    model = read_tflite(result.output)
    weights = [model.tensors[op.inputs[1]].dtype for op in model.operators if op.type in ("CONV_2D", "FULLY_CONNECTED")]
    assert weights == ["int8", "int8"]
    assert any("DENSIFY" in note for note in result.manifest.source.rewrites)
    assert "DENSIFY" not in {op.type for op in read_tflite(result.output).operators}
    scores = validate(result.output, sparse_tflite, digits_calib.parent / "val", runs=3, warmup=1, limit=64)
    assert scores.worst_sqnr_db > 20 and scores.accuracy.output == "output_0"


def test_a_litert_torch_file_converts_to_strict_int8_with_int8_weights(tmp_path):
    """tests/fixtures/litert_torch/make.py wrote it with litert-torch 0.10.0 (no torch needed here)."""
    from edgeq.tflite.stablehlo_constants import has_stablehlo_constant_flag

    source = TFLITE.parent / "litert_torch" / "small_cnn.tflite"
    assert has_stablehlo_constant_flag(source.read_bytes())
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.uniform(size=(32, 16, 16, 3)).astype(np.float32))
    np.save(tmp_path / "val.npy", rng.uniform(size=(16, 16, 16, 3)).astype(np.float32))
    result = convert(source, tmp_path / "small_cnn_int8.tflite", tmp_path / "calib.npy", samples=32)
    model = read_tflite(result.output)
    weights = [model.tensors[op.inputs[1]].dtype for op in model.operators if op.type in ("CONV_2D", "FULLY_CONNECTED")]
    assert weights == ["int8"] * 3 and result.manifest.ops_int8 == result.manifest.ops_total
    assert any("keep_stablehlo_constant" in note for note in result.manifest.source.rewrites)
    assert not has_stablehlo_constant_flag(result.output.read_bytes())
    scores = validate(result.output, source, tmp_path / "val.npy", runs=3, warmup=1)
    assert scores.worst_sqnr_db > 20 and scores.outputs[0].role == "classes"


def test_a_custom_op_is_named_with_its_node_in_one_line(tmp_path, cli):
    import tensorflow as tf

    weights = tf.constant(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def bessel(x):
        return tf.math.special.bessel_i1e(tf.matmul(x, weights))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([bessel.get_concrete_function()])
    converter.allow_custom_ops = True
    (tmp_path / "custom.tflite").write_bytes(converter.convert())
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32))
    code, _, err = cli(
        "convert", str(tmp_path / "custom.tflite"), "--data", str(tmp_path / "x.npy"), "--output", str(tmp_path / "out.tflite")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "custom op(s) BesselI1e (node 1, output 'Identity')" in err and not (tmp_path / "out.tflite").exists()

    # the same op under the name of one of MediaPipe's (face_landmark_with_attention.tflite has three
    # kinds): what it computes, once per kind
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray((tmp_path / "custom.tflite").read_bytes()), 0)
    (code_entry,) = [c for c in root.operatorCodes if c.customCode]
    code_entry.customCode = b"TransformTensorBilinear"
    builder = flatbuffers.Builder(1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "mediapipe.tflite").write_bytes(bytes(builder.Output()))
    code, _, err = cli(
        "convert", tmp_path / "mediapipe.tflite", "--data", tmp_path / "x.npy", "--output", tmp_path / "out.tflite"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "TransformTensorBilinear (node 1, output 'Identity': a feature map resampled through an affine matrix" in err


def test_an_onnx2tf_file_converts_and_validates_from_an_image_folder(tmp_path):
    """tests/fixtures/onnx2tf/make.py wrote it with onnx2tf 1.29 from an NCHW ONNX classifier."""
    from helpers import images as _images

    source = TFLITE.parent / "onnx2tf" / "small_cnn_float32.tflite"
    assert read_tflite(source).tensors[read_tflite(source).inputs[0]].shape == (1, 32, 32, 3)  # onnx2tf made it NHWC
    calib, val = _images(tmp_path / "calib", 32, 32, 0), _images(tmp_path / "val", 16, 32, 1)
    result = convert(source, tmp_path / "onnx_int8.tflite", calib, samples=32)
    assert not result.manifest.float_ops and result.manifest.sizes.source_bytes == source.stat().st_size
    scores = validate(result.output, source, val, runs=3, warmup=1)
    assert scores.worst_sqnr_db > 20 and scores.accuracy.output is not None  # its Softmax: a classes output
