"""Session fixtures: tiny real Keras models, built and saved once, and real bundled PNG data."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# conversions reuse each other's calibrations within a test session, never the user's cache folder
os.environ["EDGEQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeq-test-cache-")

import numpy as np
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "representative_data" / "digits"


@pytest.fixture(scope="session")
def digits_calib() -> Path:
    return DIGITS / "calib"


def _seed():
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def cnn_keras(models_dir) -> Path:
    """Conv, DepthwiseConv and Dense on the 8x8x1 digits."""
    import keras

    _seed()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer="random_normal", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dwconv")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, bias_initializer="random_normal", name="logits")(x)
    path = models_dir / "cnn.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def outlier_keras(models_dir) -> Path:
    """One layer made hard to quantize on purpose: `fourth_power` = dense**4 has a heavy tail, so
    its calibrated range is set by rare large values and ordinary values round to a coarse grid."""
    import keras

    _seed()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer="random_normal", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(
        16, kernel_initializer=keras.initializers.RandomNormal(stddev=0.3), bias_initializer="random_normal", name="dense"
    )(x)
    square = keras.layers.Multiply(name="square")([x, x])
    x = keras.layers.Multiply(name="fourth_power")([square, square])
    outputs = keras.layers.Dense(10, bias_initializer="random_normal", name="logits")(x)
    path = models_dir / "outlier.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def hardswish_keras(models_dir) -> Path:
    """Fully int8-convertible, with HARD_SWISH (not on the Edge TPU's op list) in the middle."""
    import keras

    _seed()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer="random_normal", name="conv")(inputs)
    x = keras.layers.Activation("hard_swish", name="hswish")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer="random_normal", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, bias_initializer="random_normal", name="logits")(x)
    path = models_dir / "hardswish.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def weight_outlier_keras(models_dir) -> Path:
    """Two layers made to quantize badly: `hard` and `hard2` each carry a weight of 60 on an input
    that is always 0 (pixel 0 of every digit; a unit of `hard` whose ReLU never fires), so their
    per-channel weight scales are ~60/127 and every ordinary weight rounds to 0 or one coarse step.
    Kept in float they are exact, and nothing else in the model is hard."""
    import keras

    _seed()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    hard = keras.layers.Dense(32, activation="relu", bias_initializer="random_normal", name="hard")
    hard2 = keras.layers.Dense(16, activation="relu", bias_initializer="random_normal", name="hard2")
    x = hard2(hard(x))
    outputs = keras.layers.Dense(10, bias_initializer="random_normal", name="logits")(x)
    model = keras.Model(inputs, outputs)
    w, b = hard.get_weights()
    w[0, :], b[0] = 60.0, -1000.0  # pixel 0 is blank in every digit; unit 0 never fires
    hard.set_weights([w, b])
    w2, b2 = hard2.get_weights()
    w2[0, :] = 60.0
    hard2.set_weights([w2, b2])
    path = models_dir / "weight_outlier.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def sin_keras(models_dir) -> Path:
    """A model with SIN in the middle: TFLite has no int8 kernel for it."""
    import keras

    _seed()
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.ops.sin(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, bias_initializer="random_normal", name="logits")(x)
    path = models_dir / "sin.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def dynamic_keras(models_dir) -> Path:
    """Spatial dimensions unknown: conversion needs --input-shape."""
    import keras

    _seed()
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    path = models_dir / "dynamic.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="session")
def two_input_keras(models_dir) -> Path:
    import keras

    _seed()
    a = keras.Input((4,), name="a")
    b = keras.Input((6,), name="b")
    x = keras.layers.Concatenate(name="concat")([keras.layers.Dense(8, name="fa")(a), keras.layers.Dense(8, name="fb")(b)])
    outputs = keras.layers.Dense(3, name="out")(x)
    path = models_dir / "two_inputs.keras"
    keras.Model([a, b], outputs).save(path)
    return path


@pytest.fixture(scope="session")
def cnn_export_dir(cnn_keras, models_dir) -> Path:
    """A SavedModel written by Keras `model.export()`."""
    import keras

    path = models_dir / "cnn_export"
    keras.models.load_model(cnn_keras).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def cnn_h5(cnn_keras, models_dir) -> Path:
    import keras

    path = models_dir / "cnn.h5"
    keras.models.load_model(cnn_keras).save(path)
    return path


@pytest.fixture(scope="session")
def cnn_int8(cnn_keras, digits_calib, tmp_path_factory):
    """The CNN converted once with defaults (strict int8, int8 I/O) from the PNG folder."""
    from helpers import convert

    out = tmp_path_factory.mktemp("cnn_int8") / "cnn_int8.tflite"
    return convert(cnn_keras, out, digits_calib, samples=64)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, digits_calib):
    """The demo CNN trained briefly, its INT8 model, and its float .tflite."""
    sys.path.insert(0, str(ROOT / "demo"))
    from helpers import convert
    from train_digits import train

    folder = tmp_path_factory.mktemp("trained")
    keras_path = folder / "digits.keras"
    train(keras_path, epochs=6, side=8)  # the 8x8 images as they are: quick, and the tests' shapes
    int8 = convert(keras_path, folder / "digits_int8.tflite", digits_calib, samples=200).output
    float_path = folder / "digits_float.tflite"
    from edgeq.frameworks.sources import load_source

    float_path.write_bytes(load_source(keras_path).make_converter().convert())
    return keras_path, int8, float_path


def _cli_runner():
    """Run the real CLI in-process; returns (exit code, stdout, stderr)."""
    from edgeq.cli import app

    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return run


@pytest.fixture
def cli():
    return _cli_runner()


@pytest.fixture(scope="module")
def cli_module():
    """The CLI for module-scoped fixtures."""
    return _cli_runner()


def digits_images(n: int = 16) -> np.ndarray:
    """The first n calibration digits as a float (n, 8, 8, 1) array in 0..1."""
    from edgeq.data.samples import InputSpec, open_samples

    source = open_samples(DIGITS / "calib", [InputSpec("image", (1, 8, 8, 1))], limit=n)
    return np.concatenate([s[0] for s in source])


MODEL_FIXTURES = {
    "models_dir",
    "cnn_keras",
    "outlier_keras",
    "hardswish_keras",
    "weight_outlier_keras",
    "sin_keras",
    "dynamic_keras",
    "two_input_keras",
    "cnn_export_dir",
    "cnn_h5",
    "cnn_int8",
    "trained",
}
TIER_FIXTURES = {"sshd": "ssh", "device_python": "ssh", "emulation": "emulation"}


def pytest_collection_modifyitems(items):
    """Markers from what a test needs: a model fixture means TensorFlow (`tf`), the sshd fixture
    `ssh`, the arm64 sysroot `emulation`; `make test-fast` deselects all of them."""
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if needs & MODEL_FIXTURES:
            item.add_marker(pytest.mark.tf)
        for fixture, marker in TIER_FIXTURES.items():
            if fixture in needs:
                item.add_marker(getattr(pytest.mark, marker))


# -- every manifest and results file a test writes matches the published JSON Schemas -------------

_SCHEMAS: dict = {}


def written_file_errors(folder: Path) -> list[str]:
    """Manifests and results files of today's schema version under `folder` that do not match
    edgeq/schemas/*.schema.json, one line each (files of older versions are upgraded on read)."""
    import json

    import jsonschema

    from edgeq.core.schema import SCHEMA_VERSION

    if not _SCHEMAS:
        for name in ("manifest", "results"):
            _SCHEMAS[name] = json.loads((ROOT / "edgeq" / "schemas" / f"{name}.schema.json").read_text())
    errors = []
    for path in folder.rglob("*.json"):
        try:
            data = json.loads(path.read_bytes()) if path.stat().st_size < 20 << 20 else None
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
            continue
        kind = "manifest" if {"recipe", "sizes"} <= set(data) else "results" if {"accuracy", "model"} <= set(data) else None
        if kind is None:
            continue
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_SCHEMAS[kind]).iter_errors(data))
        if error is not None:
            errors.append(f"{path.name} ({kind}): {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}")
    return errors


@pytest.fixture(autouse=True)
def _written_files_match_the_schemas(request):
    """After each test that has a tmp_path: what edgeq wrote there matches the schemas. A test that
    writes malformed files on purpose (the hostile-input tests) is marked `hostile_files`."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and request.node.get_closest_marker("hostile_files") is None:
        errors = written_file_errors(folder)
        assert not errors, errors


@pytest.fixture(autouse=True, scope="session")
def _not_in_ci():
    """A CI's own CI=true would add a progress line per phase to stderr, in module fixtures too;
    tests that want it set it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CI", raising=False)
        yield
