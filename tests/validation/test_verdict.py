"""A verdict to trust on any model: outputs by role, per-slice error, no PASS on a broken output,
the model's own input normalization, channels-first inputs, same-name pairing.

Models: MTCNN's ONet with the weights the mtcnn package ships, and models built to reproduce each
pattern found on real ones (a detector head, a float .tflite with metadata, Rescaling, NCHW)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, convert, validate
from helpers import images as _images

from edgeq.data.samples import Preprocessing
from edgeq.tflite.metadata import ImageInput, ModelMetadata, Output, with_metadata

pytestmark = pytest.mark.tf


def _json(cli, *args) -> tuple[int, dict]:
    out = Path(args[args.index("--json") + 1])
    code, _, err = cli(*args)
    assert code in (0, 1), err
    return code, json.loads(out.read_text())


# -- MTCNN's ONet with its shipped weights ---------------------------------------------------------


@pytest.fixture(scope="module")
def onet_keras(tmp_path_factory) -> Path:
    """ONet of mtcnn 1.0.0 as a functional Keras model, with the weights the package ships."""
    pytest.importorskip("mtcnn", reason="needs mtcnn==1.0.0 (the dev extra installs it)")
    import keras
    from keras import layers as L
    from mtcnn.utils.tensorflow import load_weights

    image = keras.Input((48, 48, 3), name="image")
    x = image
    for filters, kernel, pool, stride, padding in ((32, 3, 3, 2, "same"), (64, 3, 3, 2, "valid"), (64, 3, 2, 2, "same")):
        x = L.Conv2D(filters, kernel)(x)
        x = L.PReLU(shared_axes=[1, 2])(x)
        x = L.MaxPooling2D(pool, stride, padding=padding)(x)
    x = L.PReLU(shared_axes=[1, 2])(L.Conv2D(128, 2)(x))
    x = L.PReLU()(L.Dense(256)(L.Flatten()(L.Permute((2, 1, 3))(x))))
    model = keras.Model(
        image, [L.Dense(4, name="box")(x), L.Dense(10, name="landmarks")(x), L.Dense(2, activation="softmax", name="face")(x)]
    )
    model.set_weights(load_weights("onet.lz4"))
    path = tmp_path_factory.mktemp("onet") / "onet.keras"
    model.save(path)
    return path


def test_onet_agreement_is_on_the_face_probability_only(onet_keras, tmp_path, cli):
    calib, val = _images(tmp_path / "calib", 32, 48, 0), _images(tmp_path / "val", 24, 48, 1)
    out = tmp_path / "onet_int8.tflite"
    convert(onet_keras, out, calib, samples=32, preprocessing=_mtcnn_normalization())
    code, results = _json(
        cli,
        "validate",
        str(out),
        "--reference",
        str(onet_keras),
        "--data",
        str(val),
        "--runs",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0
    roles = {o["name"]: (o["role"], o["role_from"]) for o in results["outputs"]}
    assert roles["output_0"][0] == "values" and roles["output_1"][0] == "values"  # box, landmarks
    assert roles["output_2"][0] == "classes" and "SOFTMAX" in roles["output_2"][1]
    assert results["accuracy"]["output"] == "output_2" and results["accuracy"]["top_k"] is None  # 2 classes: no top-5
    face = next(o for o in results["outputs"] if o["name"] == "output_2")
    assert face["agreement"] == results["accuracy"]["agreement"] is not None
    assert all(o["agreement"] is None for o in results["outputs"] if o["role"] == "values")
    text = cli("validate", str(out), "--reference", str(onet_keras), "--data", str(val), "--runs", "3")[1]
    assert "classes output 'output_2'" in text and "verdict   no gates given" in text and "PASS" not in text


def _mtcnn_normalization():
    return Preprocessing(mean=(127.5,), std=(128.0,))  # mtcnn.utils.images: (images - 127.5) / 128


# -- a detector head: class scores beside boxes in one tensor --------------------------------------


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> tuple[Path, Path, Path]:
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(3)
    features = keras.Input((32,), name="features")
    h = L.Dense(64, activation="relu")(features)
    boxes = L.Reshape((4, 50))(L.Rescaling(100.0, offset=100.0)(L.Dense(200, activation="tanh")(h)))
    scores = L.Reshape((2, 50))(L.Dense(100, activation="sigmoid")(h))
    model = keras.Model(features, L.Concatenate(axis=1, name="head")([boxes, scores]))
    folder = tmp_path_factory.mktemp("detector")
    model.save(folder / "det.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "calib.npy", rng.normal(size=(64, 32)).astype(np.float32))
    np.save(folder / "val.npy", rng.normal(size=(32, 32)).astype(np.float32))
    return folder / "det.keras", folder / "calib.npy", folder / "val.npy"


def test_destroyed_class_scores_are_flagged_and_fail_a_slice_gate(detector, tmp_path, cli):
    keras_path, calib, val = detector
    out = tmp_path / "det_int8.tflite"
    convert(keras_path, out, calib, samples=64)
    code, results = _json(
        cli,
        "validate",
        str(out),
        "--reference",
        str(keras_path),
        "--data",
        str(val),
        "--runs",
        "3",
        "--min-sqnr",
        "20",
        "--min-slice-sqnr",
        "20",
        "--json",
        str(tmp_path / "r.json"),
    )
    (head,) = results["outputs"]
    assert head["sqnr_db"] > 20 and head["role"] == "values"  # the boxes carry the energy: the whole looks healthy
    assert head["worst_slice"]["axis"] == 1 and head["worst_slice"]["index"] in (4, 5) and head["worst_slice"]["sqnr_db"] < 10
    gates = {g["name"]: g["status"] for g in results["gates"]}
    assert gates == {"min_sqnr": "passed", "min_slice_sqnr": "failed"} and code == 1
    text = cli("validate", str(out), "--reference", str(keras_path), "--data", str(val), "--runs", "3")[1]
    assert "likely broken" in text and "worst slice axis 1 index" in text and "far below the output" in text
    report = tmp_path / "report"
    cli("validate", str(out), "--reference", str(keras_path), "--data", str(val), "--runs", "3", "--report", str(report))
    assert "Likely broken" in (report / "report.md").read_text() and "Likely broken" in (report / "report.html").read_text()


def test_agreement_gates_on_a_model_without_classes_are_usage_errors(detector, tmp_path, cli):
    keras_path, calib, val = detector
    out = tmp_path / "det_int8.tflite"
    convert(keras_path, out, calib, samples=16)
    code, _, err = cli("validate", str(out), "--reference", str(keras_path), "--data", str(val), "--min-agreement", "0.9")
    assert code == 2 and "has none" in err and "--output-role" in err


# -- no PASS on a broken output --------------------------------------------------------------------


def test_a_broken_output_without_gates_is_no_pass_and_is_named(tmp_path, cli):
    import keras

    keras.utils.set_random_seed(1)
    x = keras.Input((16,), name="x")
    model = keras.Model(x, keras.layers.Dense(8, name="regression")(x))
    model.save(tmp_path / "reg.keras")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", (1000 * rng.normal(size=(32, 16))).astype(np.float32))  # calibrated far too wide
    np.save(tmp_path / "val.npy", rng.normal(size=(16, 16)).astype(np.float32))
    out = tmp_path / "reg_int8.tflite"
    convert(tmp_path / "reg.keras", out, tmp_path / "calib.npy", samples=32)
    code, results = _json(
        cli,
        "validate",
        str(out),
        "--reference",
        str(tmp_path / "reg.keras"),
        "--data",
        str(tmp_path / "val.npy"),
        "--runs",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and results["gates"] == [] and results["outputs"][0]["sqnr_db"] < 10
    text = cli(
        "validate", str(out), "--reference", str(tmp_path / "reg.keras"), "--data", str(tmp_path / "val.npy"), "--runs", "3"
    )[1]
    assert "verdict   no gates given" in text and "verdict   PASS" not in text
    assert "output 'output_0' (values) is likely broken" in text and "--calibration auto" in text


# -- the model's own input normalization -----------------------------------------------------------


@pytest.fixture(scope="module")
def minus_one_to_one(tmp_path_factory, digits_calib) -> Path:
    """A float .tflite whose metadata says its input is (pixel - 127.5) / 127.5."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(2)
    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(image)
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    plain = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    meta = ModelMetadata("digits", inputs=(ImageInput("image", mean=(127.5,), std=(127.5,)),), outputs=(Output("output_0"),))
    path = tmp_path_factory.mktemp("meta") / "digits_float.tflite"
    path.write_bytes(with_metadata(plain, meta))
    return path


def test_metadata_normalization_is_the_default_and_equals_the_explicit_range(minus_one_to_one, digits_calib, tmp_path):
    val = digits_calib.parent / "val"
    stated = convert(minus_one_to_one, tmp_path / "a.tflite", digits_calib, samples=64)
    explicit = convert(
        minus_one_to_one, tmp_path / "b.tflite", digits_calib, samples=64, preprocessing=Preprocessing(value_range="-1,1")
    )
    wrong = convert(
        minus_one_to_one, tmp_path / "c.tflite", digits_calib, samples=64, preprocessing=Preprocessing(value_range="0,1")
    )
    recipe = stated.manifest.to_json()["recipe"]["preprocessing"]
    assert recipe["mean"] == [127.5] and recipe["std"] == [127.5]
    assert stated.manifest.preprocessing.origins["mean"] == "model metadata"
    assert any("states [-1, 1]" in w for w in wrong.warnings)  # a flag that contradicts the model is named
    sqnr = {
        name: validate(r.output, minus_one_to_one, val, runs=3, warmup=1)
        for name, r in (("stated", stated), ("explicit", explicit))
    }
    assert sqnr["stated"].preprocessing.origins["mean"] == "manifest"
    assert abs(sqnr["stated"].worst_sqnr_db - sqnr["explicit"].worst_sqnr_db) < 0.2  # float rounding of two spellings
    at_real_range = validate(wrong.output, minus_one_to_one, val, runs=3, warmup=1, preprocessing={"value_range": "-1,1"})
    assert at_real_range.worst_sqnr_db < sqnr["stated"].worst_sqnr_db - 6  # what the silent default used to cost
    assert stated.manifest.sizes.source_bytes == minus_one_to_one.stat().st_size  # the ratio against the given file


def test_per_layer_without_a_manifest_uses_the_normalization_the_metadata_states(
    minus_one_to_one, digits_calib, tmp_path, monkeypatch
):
    """An INT8 file alone (no manifest beside it) whose metadata states (x - 127.5) / 127.5: the
    per-layer debugger gets the same inputs as the main sweep, in [-1, 1], not the 0..1 default."""
    from edgeq.analysis import per_layer as debugger

    model = convert(minus_one_to_one, tmp_path / "alone.tflite", digits_calib, samples=32).output
    (tmp_path / "alone.edgeq.json").unlink()
    seen = []
    real = debugger.per_layer_errors

    def watched(model, reference, samples, *args):
        seen.extend(samples)
        return real(model, reference, samples, *args)

    monkeypatch.setattr(debugger, "per_layer_errors", watched)
    result = validate(model, minus_one_to_one, digits_calib.parent / "val", runs=2, warmup=1, per_layer=True, per_layer_samples=8)
    assert result.preprocessing.origins["mean"] == "model metadata" and result.per_layer.layers
    values = np.concatenate([np.ravel(x) for sample in seen for x in sample])
    assert len(seen) == 8 and values.min() < -0.5 and values.max() <= 1.0  # (pixel - 127.5) / 127.5, not pixel / 255


def test_a_keras_rescaling_layer_makes_the_default_range_0_255(digits_calib, tmp_path, cli):
    import keras

    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(image)
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    model.save(tmp_path / "rescaling.keras")
    code, text, err = cli(
        "convert",
        str(tmp_path / "rescaling.keras"),
        "--data",
        str(digits_calib),
        "--output",
        str(tmp_path / "r.tflite"),
        "--samples",
        "32",
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "r.edgeq.json").read_text())
    assert manifest["recipe"]["preprocessing"]["value_range"] == "0,255"
    assert manifest["preprocessing"]["origins"]["value_range"].startswith("Keras layer 'rescaling")
    assert "range from Keras layer 'rescaling" in text
    assert max(hi for _, hi in manifest["calibration"]["observed_range"].values()) > 200  # calibrated on raw pixels


# -- channels-first inputs -------------------------------------------------------------------------


def test_a_channels_first_model_takes_an_image_folder(tmp_path, cli):
    import keras

    keras.utils.set_random_seed(4)
    image = keras.Input((3, 16, 16), name="image")  # PyTorch's layout
    x = keras.layers.Permute((2, 3, 1))(image)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    model = keras.Model(image, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "nchw.keras")
    calib, val = _images(tmp_path / "calib", 24, 16, 0), _images(tmp_path / "val", 12, 16, 1)
    out = tmp_path / "nchw_int8.tflite"
    code, _, err = cli("convert", str(tmp_path / "nchw.keras"), "--data", str(calib), "--output", str(out), "--samples", "24")
    assert code == 0, err
    code, results = _json(
        cli,
        "validate",
        str(out),
        "--reference",
        str(tmp_path / "nchw.keras"),
        "--data",
        str(val),
        "--runs",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and "fed as NCHW" in results["data"] and results["worst_sqnr_db"] > 15


# -- pairing by identical names, without a manifest -------------------------------------------------


def test_files_with_the_same_output_names_pair_without_a_manifest(tmp_path, cli):
    """Both files from concrete functions without a SignatureDef: outputs Identity, Identity_1."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    w1, w2 = tf.constant(np.random.randn(16, 4).astype(np.float32)), tf.constant(np.random.randn(16, 4).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 16), tf.float32)])
    def two(x):
        return {"a": tf.matmul(x, w1), "b": tf.nn.relu(tf.matmul(x, w2))}

    rng = np.random.default_rng(0)
    data = rng.normal(size=(32, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    plain = tf.lite.TFLiteConverter.from_concrete_functions([two.get_concrete_function()])
    (tmp_path / "float.tflite").write_bytes(plain.convert())
    plain.optimizations = [tf.lite.Optimize.DEFAULT]
    plain.representative_dataset = lambda: ([row[None]] for row in data)
    (tmp_path / "int8.tflite").write_bytes(plain.convert())  # a plain script's file: no manifest
    code, results = _json(
        cli,
        "validate",
        str(tmp_path / "int8.tflite"),
        "--reference",
        str(tmp_path / "float.tflite"),
        "--data",
        str(tmp_path / "x.npy"),
        "--runs",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0 and results["pairing"]["outputs"] == "tensor name"
    assert sorted(o["name"] for o in results["outputs"]) == ["Identity", "Identity_1"]
    assert all(o["name"] == o["reference_name"] and o["sqnr_db"] > 20 for o in results["outputs"])


# -- an install without TensorFlow -----------------------------------------------------------------


@pytest.mark.slow
def test_an_install_without_the_convert_extra_names_it(tmp_path, cnn_keras, cnn_int8, digits_calib):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeq-*.whl")
    venv.create(tmp_path / "v", with_pip=True)
    python = tmp_path / "v" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # only the new venv's packages
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900, env=env
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, env=env).returncode != 0
    run = subprocess.run(
        [
            str(tmp_path / "v" / "bin" / "edgeq"),
            "validate",
            str(cnn_int8.output),
            "--reference",
            str(cnn_keras),
            "--data",
            str(digits_calib.parent / "val"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 2, run.stderr
    assert "pip install 'edgeq[convert]'" in run.stderr and "Traceback" not in run.stderr


# -- a written file runs ---------------------------------------------------------------------------


def _without_filter_quantization(model: bytes) -> bytes:
    """What MediaPipe's sparse models came out as: a CONV_2D whose int8 filter has no quantization."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = root.subgraphs[0]
    codes = [c.builtinCode for c in root.operatorCodes]
    conv = next(op for op in graph.operators if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D)
    graph.tensors[conv.inputs[1]].quantization = None
    builder = flatbuffers.Builder(len(model))
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_model_that_would_not_run_is_never_written(cnn_keras, digits_calib, tmp_path, monkeypatch, cli):
    import edgeq.conversion.describe as describe

    monkeypatch.setattr(describe, "with_metadata", lambda model, metadata: _without_filter_quantization(model))
    out = tmp_path / "broken.tflite"
    code, _, err = cli(
        "convert",
        str(cnn_keras),
        "--data",
        str(digits_calib),
        "--output",
        str(out),
        "--samples",
        "8",
        "--metadata",
        "generic",
        "--no-cache",
    )
    assert code == 3 and "does not run in LiteRT" in err and "kTfLiteAffineQuantization" in err
    assert not out.exists() and not (tmp_path / "broken.edgeq.json").exists()
    monkeypatch.undo()
    fine = convert(cnn_keras, tmp_path / "fine.tflite", digits_calib, samples=8)
    assert fine.manifest.model.invoked_on == "the first calibration sample"


def test_mtcnns_subclassed_onet_converts_with_input_shape(tmp_path, cli):
    """mtcnn's own ONet class (a subclassed keras.Model), saved as users save it."""
    pytest.importorskip("mtcnn", reason="needs mtcnn==1.0.0 (the dev extra installs it)")
    from mtcnn.network.onet import ONet
    from mtcnn.utils.tensorflow import load_weights

    model = ONet()
    model.build()
    model.set_weights(load_weights("onet.lz4"))
    model.save(tmp_path / "onet.keras")
    (tmp_path / "objects.py").write_text("from mtcnn.network.onet import ONet\ncustom_objects = {'ONet': ONet}\n")
    calib = _images(tmp_path / "calib", 16, 48, 0)
    args = [
        "convert",
        str(tmp_path / "onet.keras"),
        "--custom-objects",
        str(tmp_path / "objects.py"),
        "--data",
        str(calib),
        "--samples",
        "16",
        "--mean",
        "127.5",
        "--std",
        "128",
        "--output",
        str(tmp_path / "onet_int8.tflite"),
    ]
    code, _, err = cli(*args)
    assert code == 2 and "subclassed Keras model" in err and "--input-shape" in err
    code, text, err = cli(*args, "--input-shape", "1,48,48,3")
    assert code == 0, err
    manifest = json.loads((tmp_path / "onet_int8.edgeq.json").read_text())
    assert len(manifest["outputs"]) == 3 and not manifest["float_ops"]
