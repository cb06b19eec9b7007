"""Per-layer analysis and the accuracy search on graphs beyond the demo model (issue: int8-I/O
graphs whose input zero-point is 0 crashed TensorFlow's debugger)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf


@pytest.fixture(scope="session")
def mini_xception(models_dir) -> Path:
    """The reported graph: 64x64x1 'input_1', conv-BN-relu, a separable residual block, GAP, softmax; .h5."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 1), name="input_1")
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inp)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    r = keras.layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(x)
    r = keras.layers.MaxPooling2D(3, 2, "same")(keras.layers.BatchNormalization()(r))
    s = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 1, strides=2, use_bias=False)(x))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(7, 3)(keras.layers.Add()([r, s])))
    path = models_dir / "mini_xception.h5"
    keras.Model(inp, keras.layers.Activation("softmax")(x)).save(path)
    return path


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Path:
    """Gray PNGs, a bright square on noise; pixels 0 and 254 occur, so at --range=-1,1 the input
    calibrates to [-128 s, 127 s] and its zero-point is 0."""
    from PIL import Image

    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for label, level in (("bright", 200), ("dim", 120)):
        (root / label).mkdir()
        for i in range(12):
            img = rng.integers(0, 60, (64, 64)).astype(np.uint8)
            y, x = rng.integers(5, 40, 2)
            img[y : y + 20, x : x + 20] = level
            img[0, 0], img[0, 1] = 254, 0
            Image.fromarray(img).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def depthwise_first(models_dir) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=4, padding="same", activation="relu")(inp)
    x = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    path = models_dir / "depthwise_first.keras"
    keras.Model(inp, x).save(path)
    return path


def _per_layer(cli, model: Path, reference: Path, data: Path, tmp: Path, *extra: str) -> dict:
    out = tmp / f"{model.stem}.json"
    code, _, err = cli(
        "validate",
        model,
        "--reference",
        reference,
        "--data",
        data,
        "--per-layer",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
        out,
        "--force",
        *extra,
    )
    assert code == 0, err  # no gate is given here: exit 1 would be a gate failing that nobody set
    return json.loads(out.read_text())


def _checks(cli, source: Path, data: Path, tmp: Path, *extra: str) -> None:
    """--per-layer ranks every verified layer; an unreachable budget gives a best-effort model and
    exit 1; a budget between full int8 and the best mix is met."""
    from edgeq.tflite.model import read_tflite

    int8 = tmp / "m.tflite"
    code, _, err = cli("convert", source, "--data", data, "-o", int8, "--force", *extra)
    assert code == 0, err
    layers = _per_layer(cli, int8, source, data, tmp, *[e for e in extra if e.startswith("--range")])["per_layer"]["layers"]
    model = read_tflite(int8)
    quantized = [op for op in model.operators if model.op_precision(op) == "int8"]
    assert layers and len(layers) >= len(quantized) - 2  # every quantized op but the final ones the debugger merges
    assert [l["rank"] for l in layers] == list(range(1, len(layers) + 1))
    assert all(l["sqnr_db"] is None or isinstance(l["sqnr_db"], float) for l in layers)

    search = ("--eval-data", data)
    code, _, err = cli(
        "convert",
        source,
        "--data",
        data,
        "-o",
        tmp / "u.tflite",
        "--force",
        *search,
        "--min-sqnr",
        "200",
        "--max-float-layers",
        "1",
        *extra,
    )
    assert code == 1 and (tmp / "u.best-effort.tflite").exists(), err
    steps = json.loads((tmp / "u.best-effort.edgeq.json").read_text())["search"]["steps"]
    full, best = steps[0]["worst_sqnr_db"], max(s["worst_sqnr_db"] for s in steps if s["k"] <= 1)
    # between full int8 and the best one-float-layer mix if that is better, else just below full int8
    budget = (full + best) / 2 if best > full + 0.1 else full - 1
    code, _, err = cli(
        "convert", source, "--data", data, "-o", tmp / "r.tflite", "--force", *search, "--min-sqnr", f"{budget:.3f}", *extra
    )
    manifest = json.loads((tmp / "r.edgeq.json").read_text())
    assert code == 0 and manifest["search"]["met"], err
    assert (manifest["search"]["chosen"]["k"] >= 1) == (best > full + 0.1)


@pytest.mark.parametrize("io", ["int8", "uint8", "float32"])
def test_reported_graph_with_each_io_type(io, mini_xception, faces, tmp_path, cli):
    _checks(cli, mini_xception, faces, tmp_path, "--range=-1,1", "--io", io)


def test_input_zero_point_is_zero_in_the_reported_graph(mini_xception, faces, tmp_path):
    """The condition that crashed TensorFlow's debugger really occurs in this corpus."""
    from helpers import convert

    result = convert(mini_xception, tmp_path / "m.tflite", faces, preprocessing=_range("-1,1"))
    assert result.manifest.inputs[0].zero_point == 0 and result.manifest.inputs[0].dtype == "int8"


def _range(value: str):
    from edgeq.data.samples import Preprocessing

    return Preprocessing(value_range=value)


def test_model_whose_first_op_is_depthwise(depthwise_first, digits_calib, tmp_path, cli):
    _checks(cli, depthwise_first, digits_calib, tmp_path)


def test_two_input_model(two_input_keras, tmp_path, cli):
    rng = np.random.default_rng(0)
    data = tmp_path / "pairs.npz"
    np.savez(data, a=rng.normal(size=(40, 4)).astype(np.float32), b=rng.normal(size=(40, 6)).astype(np.float32))
    _checks(cli, two_input_keras, data, tmp_path)


def test_model_converted_from_a_saved_model(cnn_export_dir, digits_calib, tmp_path, cli):
    _checks(cli, cnn_export_dir, digits_calib, tmp_path)
