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
def test_optimize_latency_writes_the_fastest_candidate_that_meets_the_budget(nets, source, tmp_path):
    """What the choice must be given the timings it measured, not how fast INT8 is on this CPU
    (without int8 dot-product instructions, INT8 is no faster than float here: issue 36)."""
    result = convert(nets[source], tmp_path / "m.tflite", nets["calib"], samples=32, optimize="latency",
                     eval_data=str(nets["eval"]), budget=_budget(25.0))
    record = result.manifest.latency
    by_name = {c.name: c for c in record.candidates}
    activation = "PRELU" if source.startswith("prelu") else "HARD_SWISH"
    assert activation in by_name["as converted"].off_delegate  # the real delegate left it to built-in kernels
    assert any(activation in c.keep_ops for c in record.candidates)  # so keeping it in float was a candidate
    eligible = [c for c in record.candidates if c.meets is not False]
    chosen = by_name[record.chosen]
    assert chosen.int8_p50_ms == min(c.int8_p50_ms for c in eligible) and chosen.meets
    assert chosen.worst_sqnr_db >= 25  # the accuracy budget still holds
    assert record.faster_than_float == (chosen.int8_p50_ms <= record.float_p50_ms or chosen.within_noise)
    assert {op.type for op in result.manifest.float_ops} == set(chosen.keep_ops)  # only what was chosen stays float


def test_the_recipe_of_a_latency_optimized_model_decides_it(nets, tmp_path):
    """The op types --optimize latency kept in float are part of the recipe: converting again from
    it, without --optimize, gives the same bytes (whichever candidate this CPU's timings chose)."""
    first = convert(nets["prelu"], tmp_path / "m.tflite", nets["calib"], samples=32, optimize="latency")
    record, recipe = first.manifest.latency, first.manifest.recipe
    assert set(record.keep_ops) <= set(recipe.keep_float)
    again = convert(nets["prelu"], tmp_path / "again.tflite", nets["calib"], recipe=recipe)
    assert again.manifest.latency.candidates == () and again.manifest.recipe == recipe
    assert (tmp_path / "again.tflite").read_bytes() == (tmp_path / "m.tflite").read_bytes()
    assert again.manifest.model.sha256 == first.manifest.model.sha256


def _candidate(name: str, p50: float, meets: bool | None):
    from edgeq.records.manifest import Candidate

    return Candidate(name, (), p50, 1.0 / p50, False, 10, 10, 1, {}, 30.0, meets, 1000)


@pytest.mark.parametrize("timings, meets, chosen", [
    ({"as converted": 2.0, "keep PRELU in float": 1.0}, {}, "keep PRELU in float"),
    ({"as converted": 1.0, "keep PRELU in float": 2.0}, {}, "as converted"),
    ({"as converted": 2.0, "keep PRELU in float": 1.0}, {"keep PRELU in float": False}, "as converted"),
    ({"as converted": 2.0, "keep PRELU in float": 1.0}, {"as converted": False, "keep PRELU in float": False},
     "keep PRELU in float"),  # none meets: the fastest of all
])
def test_the_choice_is_the_fastest_that_meets_the_budget_for_fixed_timings(timings, meets, chosen):
    from edgeq.conversion.latency import choose

    candidates = [_candidate(name, p50, meets.get(name, True)) for name, p50 in timings.items()]
    assert choose(candidates).name == chosen


def _budget(min_sqnr: float):
    from edgeq.records.budget import Budget

    return Budget(min_sqnr=min_sqnr)


def test_without_the_flag_a_slower_int8_model_says_so_with_the_command(nets, tmp_path, cli):
    code, text, err = cli("convert", str(nets["prelu"]), "--data", str(nets["calib"]), "--samples", "32", "--output",
                          str(tmp_path / "p.tflite"))
    assert code == 0, err
    latency = json.loads((tmp_path / "p.edgeq.json").read_text())["latency"]
    assert "PRELU" in latency["off_delegate"]
    slower = latency["speedup"] < 1 and not latency["within_noise"]  # as measured here: the hint follows the record
    assert ("INT8 ran at" in err and "PRELU x8" in err and "--optimize latency" in err) == slower
    code, text, err = cli("convert", str(nets["prelu"]), "--data", str(nets["calib"]), "--samples", "32", "--output",
                          str(tmp_path / "p.tflite"), "--force", "--optimize", "latency")
    assert code == 0 and "<< chosen" in text and "keep PRELU in float" in text and "INT8 ran at" not in err


def test_an_emulated_device_is_not_a_latency_judge(nets, tmp_path):
    result = convert(nets["prelu"], tmp_path / "m.tflite", nets["calib"], samples=16, optimize="latency",
                     device="emulated-raspberry-pi-5")
    record = result.manifest.to_json()["latency"]
    assert record["delegate"] == "xnnpack (this machine)" and "emulator gives no meaningful latency" in record["note"]
