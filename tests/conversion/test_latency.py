"""INT8 faster than float where it ships: --optimize latency on models whose int8 ops fall off
XNNPACK (PReLU, hard-swish), from Keras and from a float .tflite; the hint without the flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeq.conversion.converter import convert
from helpers import images as _images

pytestmark = pytest.mark.tf


def _net(activation: str, path: Path) -> Path:
    """A 64x64 conv net, each conv followed by `activation` (PReLU blocks, or MobileNetV3's hard-swish)."""
    import keras

    keras.utils.set_random_seed(0)
    x = image = keras.Input((64, 64, 3), name="image")
    for filters in (16, 32, 32, 64):
        for stride in (1, 2):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
            x = keras.layers.PReLU(shared_axes=[1, 2])(x) if activation == "prelu" else keras.layers.Activation("hard_swish")(x)
    model = keras.Model(image, keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(0)  # trained a few steps, so the slopes and ranges are not the initial ones
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(rng.uniform(size=(64, 64, 64, 3)).astype("float32"), rng.integers(0, 10, 64), epochs=2, batch_size=16, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> dict[str, Path]:
    import keras
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("latency")
    found = {}
    for activation in ("prelu", "hard_swish"):
        keras_path = _net(activation, folder / f"{activation}.keras")
        found[activation] = keras_path
        flat = folder / f"{activation}_float.tflite"
        flat.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(keras_path)).convert())
        found[f"{activation} tflite"] = flat
    found["calib"], found["eval"] = _images(folder / "calib", 32, 64, 0), _images(folder / "eval", 16, 64, 1)
    return found


@pytest.mark.parametrize("source", ["prelu", "prelu tflite", "hard_swish", "hard_swish tflite"])
def test_optimize_latency_chooses_a_faster_than_float_int8_model(nets, source, tmp_path):
    result = convert(nets[source], tmp_path / "m.tflite", nets["calib"], samples=32, optimize="latency",
                     eval_data=str(nets["eval"]), budget=_budget(25.0))
    record = result.manifest.to_json()["latency"]
    chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
    as_converted = next(c for c in record["candidates"] if c["name"] == "as converted")
    activation = "PRELU" if source.startswith("prelu") else "HARD_SWISH"
    assert activation in as_converted["off_delegate"] and as_converted["ratio"] > 1  # slower than float as converted
    assert activation in chosen["keep_ops"] and chosen["ratio"] <= 1 and record["faster_than_float"]
    assert chosen["meets"] and chosen["worst_sqnr_db"] >= 25  # the accuracy budget still holds
    assert {op.type for op in result.manifest.float_ops} == set(chosen["keep_ops"])  # only what was chosen stays float


def _budget(min_sqnr: float):
    from edgeq.conversion.search import Budget

    return Budget(min_sqnr=min_sqnr)


def test_without_the_flag_a_slower_int8_model_says_so_with_the_command(nets, tmp_path, cli):
    code, text, err = cli("convert", str(nets["prelu"]), "--data", str(nets["calib"]), "--samples", "32", "--output",
                          str(tmp_path / "p.tflite"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "p.edgeq.json").read_text())
    assert manifest["latency"]["ratio"] > 1 and "PRELU" in manifest["latency"]["off_delegate"]
    assert "INT8 ran at" in err and "PRELU x8" in err and "--optimize latency" in err
    code, text, err = cli("convert", str(nets["prelu"]), "--data", str(nets["calib"]), "--samples", "32", "--output",
                          str(tmp_path / "p.tflite"), "--force", "--optimize", "latency")
    assert code == 0 and "<< chosen" in text and "keep PRELU in float" in text and "INT8 ran at" not in err


def test_an_emulated_device_is_not_a_latency_judge(nets, tmp_path):
    result = convert(nets["prelu"], tmp_path / "m.tflite", nets["calib"], samples=16, optimize="latency",
                     device="emulated-raspberry-pi-5")
    record = result.manifest.to_json()["latency"]
    assert record["delegate"] == "xnnpack (this machine)" and "emulator gives no meaningful latency" in record["note"]
