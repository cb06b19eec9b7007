"""edgeq convert on real Keras/SavedModel models and real PNG data, checked with the real interpreter."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import convert

from edgeq.tflite.model import read_tflite, same_quantization
from edgeq.tflite.summary import OpCount
from tests.conftest import digits_images

WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def test_int8_from_png_folder_is_fully_integer(cnn_int8):
    model = read_tflite(cnn_int8.output)
    assert {op.type for op in model.operators} >= WEIGHTED
    for op in model.operators:
        assert model.op_precision(op) == "int8", op
        if op.type in WEIGHTED:
            weights, bias = model.tensors[op.inputs[1]], model.tensors[op.inputs[2]]
            assert weights.dtype == "int8" and weights.quantization.per_channel
            assert bias.dtype == "int32"
    assert cnn_int8.manifest.ops_int8 == len(model.operators)
    assert cnn_int8.manifest.float_ops == () and cnn_int8.manifest.float_tensors == ()


def test_manifest_io_quantization_matches_the_model_and_reproduces_float_outputs(cnn_int8, cnn_keras):
    import keras

    manifest = json.loads(cnn_int8.manifest_path.read_text())
    interpreter = _interpreter(cnn_int8.output)
    (inp,), (out,) = manifest["inputs"], manifest["outputs"]
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == "int8" and detail_in["dtype"] == np.int8
    assert (inp["scale"], inp["zero_point"]) == pytest.approx(detail_in["quantization"])
    assert (out["scale"], out["zero_point"]) == pytest.approx(detail_out["quantization"])

    # App code quantizes with the manifest's numbers: Q = round(R / S) + Z, R = S * (Q - Z).
    images = digits_images(8)
    reference = keras.models.load_model(cnn_keras).predict(images, verbose=0)
    for image, expected in zip(images, reference):
        q = np.clip(np.round(image / inp["scale"]) + inp["zero_point"], -128, 127).astype(np.int8)
        interpreter.set_tensor(detail_in["index"], q[np.newaxis])
        interpreter.invoke()
        got = out["scale"] * (interpreter.get_tensor(detail_out["index"])[0].astype(np.float32) - out["zero_point"])
        span = np.ptp(expected)
        assert np.max(np.abs(got - expected)) < 0.1 * span
        assert np.argmax(got) == np.argmax(expected)


def test_manifest_records_provenance(cnn_int8, cnn_keras, digits_calib):
    import hashlib

    m = cnn_int8.manifest.to_json()  # as the file holds it
    assert m["source"]["sha256"] == hashlib.sha256(cnn_keras.read_bytes()).hexdigest()
    assert m["calibration"]["samples"] == 64 and m["calibration"]["fingerprint"].startswith("sha256:")
    assert m["sizes"]["model_bytes"] == cnn_int8.output.stat().st_size
    assert 0 < m["sizes"]["ratio"] < 0.5
    assert m["recipe"]["mode"] == "int8" and m["recipe"]["data"] == str(digits_calib) and m["options"]["calibration"] == "minmax"
    assert m["tensorflow_version"] and m["litert_version"]


def test_same_samples_give_same_model_and_fingerprint(cnn_keras, digits_calib, cnn_int8, tmp_path):
    again = convert(cnn_keras, tmp_path / "again.tflite", digits_calib, samples=64)
    assert again.output.read_bytes() == cnn_int8.output.read_bytes()
    assert again.manifest.calibration.fingerprint == cnn_int8.manifest.calibration.fingerprint
    other = convert(cnn_keras, tmp_path / "other.tflite", digits_calib, samples=64, seed=1)
    assert other.manifest.calibration.fingerprint != cnn_int8.manifest.calibration.fingerprint


def test_quantization_parameters_equal_the_plain_converter(cnn_keras, cnn_int8, digits_calib):
    """edgeq's split calibrate/quantize gives every tensor the scale and zero-point TF's one-step path
    gives (scales within relative 1e-5: edgeq's ranges come from XNNPACK's kernels, not TFLite's own)."""
    import keras
    import tensorflow as tf

    from edgeq.data.samples import InputSpec, open_samples
    from edgeq.tflite.model import parse_tflite

    model = keras.models.load_model(cnn_keras)
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((1, 8, 8, 1), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    source = open_samples(digits_calib, [InputSpec("image", (1, 8, 8, 1))], limit=64)
    converter.representative_dataset = lambda: iter(source)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    plain = parse_tflite(converter.convert())
    ours = read_tflite(cnn_int8.output)
    assert same_quantization(plain, ours)


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_io_types(cnn_keras, digits_calib, tmp_path, io):
    result = convert(cnn_keras, tmp_path / "m.tflite", digits_calib, samples=16, io=io)
    interpreter = _interpreter(result.output)
    assert interpreter.get_input_details()[0]["dtype"] == np.dtype(io)
    assert interpreter.get_output_details()[0]["dtype"] == np.dtype(io)
    assert result.manifest.inputs[0].dtype == io
    if io == "float32":
        assert result.manifest.inputs[0].scale is None
        model = read_tflite(result.output)
        assert {model.op_precision(op) for op in model.operators} == {"int8", "convert"}
    else:
        assert result.manifest.inputs[0].scale > 0


@pytest.mark.parametrize("fixture", ["cnn_export_dir", "cnn_h5"])
def test_savedmodel_and_h5_inputs(request, fixture, digits_calib, tmp_path, cnn_int8):
    path = request.getfixturevalue(fixture)
    result = convert(path, tmp_path / "m.tflite", digits_calib, samples=64)
    model = read_tflite(result.output)
    assert all(model.op_precision(op) == "int8" for op in model.operators)
    assert result.manifest.source.kind == ("saved_model" if path.is_dir() else "keras")
    # Same weights, same samples: the same quantization as the .keras conversion.
    reference = read_tflite(cnn_int8.output)
    assert [t.quantization for t in model.tensors if t.is_constant] == [
        t.quantization for t in reference.tensors if t.is_constant
    ]


def test_tf_saved_model_save_with_dynamic_batch(models_dir, digits_calib, tmp_path):
    import tensorflow as tf

    class Scale(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((3, 3, 1, 4), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="pixels")])
        def __call__(self, pixels):
            return {"features": tf.nn.relu(tf.nn.conv2d(pixels, self.w, 1, "SAME"))}

    module = Scale()
    path = tmp_path / "tf_module"
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    result = convert(path, tmp_path / "m.tflite", digits_calib, samples=16)
    assert result.manifest.inputs[0].shape == (1, 8, 8, 1)  # dynamic batch became 1
    assert result.manifest.outputs[0].dtype == "int8"


def test_strict_int8_names_the_op_without_int8_kernel(sin_keras, digits_calib, tmp_path, cli):
    out = tmp_path / "sin.tflite"
    code, stdout, stderr = cli("convert", sin_keras, "--data", digits_calib, "-o", out, "--samples", "16")
    assert code == 2
    assert "SIN" in stderr and "int8-fallback" in stderr and "--keep-float" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists() and not out.with_name("sin.edgeq.json").exists()


def test_int8_fallback_converts_and_lists_float_ops(sin_keras, digits_calib, tmp_path):
    result = convert(sin_keras, tmp_path / "sin.tflite", digits_calib, samples=16, mode="int8-fallback")
    assert [op.type for op in result.manifest.float_ops] == ["SIN"]
    assert result.manifest.float_tensors  # the float tensors around SIN are listed
    census = result.manifest.op_census
    assert census["CONV_2D"].int8 == 1 and census["FULLY_CONNECTED"].int8 == 1
    assert census["SIN"] == OpCount(count=1, float=1)


def test_keep_float_leaves_the_named_layer_in_float(cnn_keras, digits_calib, tmp_path):
    result = convert(cnn_keras, tmp_path / "k.tflite", digits_calib, samples=16, keep_float=("dwconv",))
    model = read_tflite(result.output)
    precision = {op.type: model.op_precision(op) for op in model.operators if op.type not in ("QUANTIZE", "DEQUANTIZE")}
    assert precision == {"CONV_2D": "int8", "DEPTHWISE_CONV_2D": "float", "RESHAPE": "int8", "FULLY_CONNECTED": "int8"}
    assert result.manifest.keep_float.nodes and all("dwconv" in n for n in result.manifest.keep_float.nodes)


@pytest.mark.tf
def test_keep_float_of_a_transposed_convolution_by_name_keeps_it(digits_calib, tmp_path):
    """TensorFlow's quantizer keeps a TRANSPOSE_CONV in float by its op type only (asked by node name,
    it left it int8 while edgeq said "1 node(s) kept in float"); where every one is asked for, the type
    is kept, which keeps exactly those."""
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", name="up")(x)
    keras.Model(inputs, keras.layers.Activation("sigmoid", name="mask")(x)).save(tmp_path / "up.keras")
    result = convert(
        tmp_path / "up.keras", tmp_path / "up.tflite", digits_calib, samples=16, mode="int8-fallback", keep_float=("up",)
    )
    assert [op.type for op in result.manifest.float_ops] == ["TRANSPOSE_CONV"]
    model = read_tflite(result.output)
    assert {op.type: model.op_precision(op) for op in model.operators}["CONV_2D"] == "int8"


def test_keep_float_by_op_type_and_strict_mode_accepts_it(sin_keras, digits_calib, tmp_path):
    result = convert(sin_keras, tmp_path / "s.tflite", digits_calib, samples=16, keep_float=("SIN",))
    assert [op.type for op in result.manifest.float_ops] == ["SIN"]


def test_keep_float_unknown_name_is_a_usage_error(cnn_keras, digits_calib, tmp_path, cli):
    out = tmp_path / "k.tflite"
    code, _, stderr = cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--keep-float", "nosuchlayer")
    assert code == 2 and "nosuchlayer" in stderr and "CONV_2D" in stderr
    assert not out.exists()


def test_two_input_model_from_npz(two_input_keras, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "pairs.npz"
    np.savez(data, a=rng.normal(size=(20, 4)).astype(np.float32), b=rng.normal(size=(20, 6)).astype(np.float32))
    result = convert(two_input_keras, tmp_path / "m.tflite", data, samples=20)
    (signature,) = result.manifest.signatures
    assert {i.key: i.shape for i in signature.inputs} == {"a": (1, 4), "b": (1, 6)}
    assert result.manifest.calibration.samples == 20


def test_dynamic_spatial_input_with_input_shape(dynamic_keras, digits_calib, tmp_path):
    result = convert(dynamic_keras, tmp_path / "d.tflite", digits_calib, samples=8, input_shapes=("1,8,8,1",))
    assert result.manifest.inputs[0].shape == (1, 8, 8, 1)


@pytest.mark.parametrize(
    ("mode", "weight_type", "activation_type"),
    [("int16x8", "int8", "int16"), ("dynamic", "int8", "float32"), ("float16", "float16", "float32")],
)
def test_other_modes(cnn_keras, digits_calib, tmp_path, mode, weight_type, activation_type):
    result = convert(cnn_keras, tmp_path / "m.tflite", digits_calib, samples=16, mode=mode)
    model = read_tflite(result.output)
    dense = next(op for op in model.operators if op.type == "FULLY_CONNECTED")
    weights = model.tensors[dense.inputs[1]]
    if weights.is_constant:
        assert weights.dtype == weight_type
    else:  # float16 weights reach the kernel through a DEQUANTIZE op
        producer = next(op for op in model.operators if dense.inputs[1] in op.outputs)
        assert producer.type == "DEQUANTIZE" and model.tensors[producer.inputs[0]].dtype == weight_type
    assert model.tensors[dense.outputs[0]].dtype == activation_type
    assert result.manifest.sizes.ratio < 1


def test_per_tensor_weights(cnn_keras, digits_calib, tmp_path):
    result = convert(cnn_keras, tmp_path / "m.tflite", digits_calib, samples=16, per_tensor=True)
    assert result.manifest.weights.per_channel == 0 and result.manifest.weights.per_tensor >= 3


def test_written_files_get_ordinary_permissions(cnn_int8):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in (cnn_int8.output, cnn_int8.manifest_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_logits_classifier_gets_an_agreement_budget_through_output_role(cnn_keras, digits_calib, tmp_path, cli):
    """No SOFTMAX, unlabelled eval data: --min-agreement has no classes output to judge until --output-role names one."""
    val = tmp_path / "val.npy"
    np.save(val, digits_images(24))
    args = (
        "convert",
        cnn_keras,
        "--data",
        digits_calib,
        "--samples",
        "32",
        "--eval-data",
        val,
        "--min-agreement",
        "0.9",
        "-o",
        tmp_path / "m.tflite",
    )
    code, _, err = cli(*args)
    assert code == 2 and "--output-role KEY=classes (its outputs: output_0)" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(*args, "--output-role", "output_0=classes")
    assert code == 0, err
    manifest = json.loads((tmp_path / "m.edgeq.json").read_text())
    first = manifest["search"]["steps"][0]["outputs"][0]
    assert first["role"] == "classes" and 0 <= first["agreement"] <= 1
    assert manifest["options"]["output_roles"] == {"output_0": "classes"}


@pytest.mark.tf
def test_a_state_input_not_batched_on_its_first_axis_converts_and_validates(tmp_path):
    """A recurrent step with an explicit state [layers, 1, units] (as a PyTorch LSTM's): the .npz
    holds (N, 2, 1, 16) states, fed as declared to the calibrator and to validate."""
    import tensorflow as tf
    from helpers import validate

    rng = np.random.default_rng(0)

    class Step(tf.Module):
        def __init__(self):
            self.w = tf.Variable(rng.normal(0, 0.3, (10, 16)).astype(np.float32))
            self.u = tf.Variable(rng.normal(0, 0.3, (16, 16)).astype(np.float32))

        @tf.function(
            input_signature=[tf.TensorSpec([1, 10], tf.float32, name="x"), tf.TensorSpec([2, 1, 16], tf.float32, name="state")]
        )
        def __call__(self, x, state):
            top = tf.tanh(tf.matmul(x, self.w) + tf.matmul(state[1], self.u))
            bottom = tf.tanh(tf.matmul(x, self.w) + tf.matmul(state[0], self.u))
            return {"speech": tf.sigmoid(tf.reduce_mean(top, axis=1, keepdims=True)), "state_out": tf.stack([bottom, top])}

    step = Step()
    tf.saved_model.save(step, str(tmp_path / "step"), signatures=step.__call__.get_concrete_function())
    np.savez(
        tmp_path / "d.npz",
        x=rng.normal(size=(24, 10)).astype(np.float32),
        state=rng.uniform(-1, 1, (24, 2, 1, 16)).astype(np.float32),
    )
    result = convert(tmp_path / "step", tmp_path / "step.tflite", tmp_path / "d.npz", samples=24)
    assert [2, 1, 16] in [list(i.shape) for i in result.manifest.inputs]
    checked = validate(result.output, tmp_path / "step", tmp_path / "d.npz", runs=3, warmup=1)
    assert checked.accuracy.samples == 24 and checked.worst_sqnr_db > 15


@pytest.mark.tf
def test_a_minimum_against_zero_no_longer_clips_its_input(tmp_path):
    """max(x, 0) + a * min(x, 0) with a slope per channel (TFLite RELU, MINIMUM, MUL, ADD):
    TensorFlow's quantizer gives MINIMUM one scale for input and output and took the output's
    range [lo, 0] for x too, clipping every positive x: INT8 at 0.14 dB (the plain converter 0.48
    dB). With the MINIMUM's range widened to its input's before quantizing, it is near float."""
    import keras
    import tensorflow as tf
    from helpers import validate

    keras.utils.set_random_seed(0)
    alpha = np.random.default_rng(0).uniform(0.05, 0.4, 16).astype(np.float32)
    image = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(16, 3)(image)
    x = keras.layers.Lambda(lambda t: tf.maximum(t, 0.0) + alpha * tf.minimum(t, 0.0))(x)
    model = keras.Model(image, keras.layers.Conv2D(8, 3)(x))
    (tmp_path / "float.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).normal(0, 1, (32, 24, 24, 3)).astype(np.float32))
    result = convert(tmp_path / "float.tflite", tmp_path / "m.tflite", tmp_path / "calib.npy", samples=32, cache=False)
    assert "MINIMUM" in {op.type for op in read_tflite(result.output).operators}
    scores = validate(result.output, tmp_path / "float.tflite", tmp_path / "calib.npy", runs=2, warmup=1)
    assert scores.worst_sqnr_db > 25, scores.worst_sqnr_db


def _xnnpack_refused_model(path):
    """The search's 16-bit model with its unit at 300,000 (tests/search_models.py)."""
    from tests.search_models import beyond_sixteen_bits_model

    return beyond_sixteen_bits_model(path, huge_bias=3e5)


@pytest.mark.tf
def test_a_model_xnnpack_cannot_load_is_exit_2_naming_the_ops_and_the_remedy_works(tmp_path, cli):
    """TensorFlow writes the INT8 model, and LiteRT with XNNPACK refuses it ("failed to create
    XNNPACK runtime"): one line naming each op XNNPACK cannot create with its scale ratio, and the
    --keep-float words that fix it; with them, the model converts and loads on XNNPACK."""
    import re

    model = _xnnpack_refused_model(tmp_path / "m.keras")
    np.savez(tmp_path / "cal.npz", features=np.random.default_rng(1).uniform(0, 1, (64, 32)).astype(np.float32))
    code, _, err = cli("convert", model, "-d", tmp_path / "cal.npz", "-o", tmp_path / "m.tflite", "--no-cache")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "XNNPACK, LiteRT's default CPU delegate, cannot run FULLY_CONNECTED" in line, err
    assert "Traceback" not in err and not (tmp_path / "m.tflite").exists()
    keep = re.search(r"\((--keep-float .*?)\), or validate without XNNPACK", line).group(1).split()
    code, _, err = cli("convert", model, "-d", tmp_path / "cal.npz", "-o", tmp_path / "m.tflite", "--no-cache", *keep)
    assert code == 0 and len(keep) >= 2, err
    _interpreter(tmp_path / "m.tflite")  # XNNPACK, LiteRT's default, loads it


@pytest.mark.tf
def test_the_xnnpack_target_says_it_cannot_load_what_the_real_delegate_refuses(tmp_path):
    """The plain converter's INT8 file of the same net: LiteRT with XNNPACK refuses it, and the
    XNNPACK target check says so, naming the fully-connected heads; without XNNPACK it runs."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeq.targets import check_target
    from edgeq.tflite.model import parse_tflite

    net = tf.keras.models.load_model(_xnnpack_refused_model(tmp_path / "m.keras"))
    x = np.random.default_rng(1).uniform(0, 1, (64, 32)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    (tmp_path / "plain.tflite").write_bytes(converter.convert())
    with pytest.raises(RuntimeError, match="XNNPACK"):
        Interpreter(model_path=str(tmp_path / "plain.tflite")).allocate_tensors()
    Interpreter(
        model_path=str(tmp_path / "plain.tflite"), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    ).allocate_tensors()
    report = check_target(parse_tflite((tmp_path / "plain.tflite").read_bytes()), "xnnpack")
    refused = [f for f in report.ops if f.reason and "cannot be created by XNNPACK" in f.reason]
    assert refused and {f.type for f in refused} == {"FULLY_CONNECTED"}
    assert report.verdict.startswith(f"XNNPACK cannot load this model: {len(refused)} int8 op(s)")
