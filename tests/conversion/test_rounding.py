"""--refine rounding: learned rounding of the int8 weights (GPTQ's closed form) with refitted
biases, and --refine auto on a depthwise-separable model whose BatchNorm folding spreads its
per-channel weights 100x."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def depthwise_model(directory: Path) -> tuple[Path, Path, Path]:
    """A depthwise-separable Keras model whose depthwise BatchNorms scale channel c by 0.01..1
    (a 100x spread of the folded per-channel weights) and whose pointwise convolutions scale that
    input channel back up, so the float function stays well conditioned and only the int8
    activations between them suffer. Returns the .keras file, calibration and held-out .npy."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.ReLU()(
        keras.layers.BatchNormalization(name="stem_bn")(
            keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
        )
    )
    spreads = []
    for block, (channels, out) in enumerate(((16, 32), (32, 32))):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"dw{block}_bn")(x))
        x = keras.layers.Conv2D(out, 1, use_bias=False, name=f"pw{block}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"pw{block}_bn")(x))
        spreads.append(np.geomspace(0.01, 1.0, channels)[rng.permutation(channels)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    for block, spread in enumerate(spreads):
        bn = model.get_layer(f"dw{block}_bn")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * spread, beta * spread + 0.05 * spread, mean, var])
        pw = model.get_layer(f"pw{block}")
        pw.set_weights([pw.get_weights()[0] / spread[None, None, :, None]])
    path = directory / "depthwise.keras"
    model.save(path)
    images = rng.uniform(-1, 1, (112, 1, 32, 32, 3)).astype(np.float32)
    np.save(directory / "depthwise_calib.npy", images[:80])
    np.save(directory / "depthwise_val.npy", images[80:])
    return path, directory / "depthwise_calib.npy", directory / "depthwise_val.npy"


def _single_layer(kind: str):
    """One layer with a bias, its calibrated float graph as TensorFlow's calibrator writes it, and
    48 calibration inputs of which every position is taken (a layer this small is not subsampled;
    a depthwise layer's channels are measured on 320 of its 1728 positions)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    shape = (32,) if kind == "FULLY_CONNECTED" else (8, 8, 4)
    layer = {
        "CONV_2D": lambda: keras.layers.Conv2D(8, 3, name="layer"),
        "DEPTHWISE_CONV_2D": lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="layer"),
        "FULLY_CONNECTED": lambda: keras.layers.Dense(8, name="layer"),
    }[kind]()
    inputs = keras.Input(shape, name="x")
    model = keras.Model(inputs, layer(inputs))
    model.get_layer("layer").set_weights([w + 0.1 for w in model.get_layer("layer").get_weights()])  # a nonzero bias
    rng = np.random.default_rng(0)
    data = [rng.uniform(-0.3, 1.0, (1, *shape)).astype(np.float32) for _ in range(48)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([d] for d in data)
    converter._experimental_calibrate_only = True
    return converter.convert(), data


def _layer_error(model: bytes, calibrated: bytes, data: list[np.ndarray]) -> float:
    """|float layer(x) - int8 layer's dequantized weights and bias on the quantized x|^2, summed over
    every output of the calibration inputs, computed with TensorFlow's ops (not edgeq's code)."""
    import tensorflow as tf

    from edgeq.tflite.model import parse_tflite

    q, f = parse_tflite(model), parse_tflite(calibrated)
    op, twin = (
        [o for o in q.operators if o.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")][0],
        [o for o in f.operators if o.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")][0],
    )
    x_scale, x_zero = q.tensors[op.inputs[0]].quantization.scales[0], q.tensors[op.inputs[0]].quantization.zero_points[0]
    w_scale = np.asarray(q.tensors[op.inputs[1]].quantization.scales)
    b_scale = np.asarray(q.tensors[op.inputs[2]].quantization.scales)
    w_q, b_q = q.constant(op.inputs[1]).astype(np.float64), q.constant(op.inputs[2]).astype(np.float64) * b_scale
    w_f, b_f = f.constant(twin.inputs[1]).astype(np.float64), f.constant(twin.inputs[2]).astype(np.float64)
    w_q = w_q * (w_scale[None, None, None, :] if op.type == "DEPTHWISE_CONV_2D" else w_scale.reshape(-1, *[1] * (w_q.ndim - 1)))
    x = np.concatenate(data).astype(np.float64)
    x_q = (np.clip(np.round(x / x_scale) + x_zero, -128, 127) - x_zero) * x_scale

    def apply(w, b, inputs):
        if op.type == "FULLY_CONNECTED":
            return inputs @ w.T + b
        if op.type == "CONV_2D":
            return tf.nn.conv2d(inputs, np.transpose(w, (1, 2, 3, 0)), 1, "VALID").numpy() + b
        channels = inputs.shape[-1]
        return tf.nn.depthwise_conv2d(inputs, w[0].reshape(3, 3, channels, -1), [1, 1, 1, 1], "VALID").numpy() + b

    return float(((apply(w_f, b_f, x) - apply(w_q, b_q, x_q)) ** 2).sum())


def test_a_layer_too_wide_for_learned_rounding_keeps_nearest_rounding(monkeypatch):
    """torchcrepe's 65,536-column convolution crashed numpy's BLAS (SIGSEGV, exit 2 blaming the
    latency check): such a layer keeps the converter's values now, and the record says why."""
    from edgeq.conversion.quantize import quantize
    from edgeq.conversion.refinement import rounding
    from edgeq.records.manifest import KeepFloat
    from edgeq.records.recipe import Recipe

    calibrated, data = _single_layer("CONV_2D")  # 36 input columns
    nearest = quantize(calibrated, Recipe(), KeepFloat())
    monkeypatch.setattr(rounding, "MAX_COLUMNS", 35)
    refined, record = rounding.rounded(nearest, calibrated, [[d] for d in data])
    assert refined == nearest and record.layers == 0
    assert record.skipped and "36 input columns, more than the 35 learned rounding takes" in record.skipped[0]


@pytest.mark.parametrize("kind", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"])
def test_learned_rounding_never_gives_a_larger_layer_error_than_nearest(kind):
    """On its calibration inputs, the refined layer's output error is at most the converter's
    (nearest rounding), and smaller: the weights did move."""
    from edgeq.conversion.quantize import quantize
    from edgeq.conversion.refinement.rounding import rounded
    from edgeq.records.manifest import KeepFloat
    from edgeq.records.recipe import Recipe
    from edgeq.tflite.model import parse_tflite

    calibrated, data = _single_layer(kind)
    nearest = quantize(calibrated, Recipe(), KeepFloat())
    refined, record = rounded(nearest, calibrated, [[d] for d in data])
    assert record.method == "rounding" and record.layers == 1 and not record.skipped
    # every position; a depthwise channel (10 columns) is measured on 320 of them
    assert record.per_layer[0].rows == {"FULLY_CONNECTED": len(data), "CONV_2D": len(data) * 36, "DEPTHWISE_CONV_2D": 320}[kind]
    assert record.per_layer[0].after_db > record.per_layer[0].before_db
    before, after = _layer_error(nearest, calibrated, data), _layer_error(refined, calibrated, data)
    assert after <= before * (1 + 1e-9), (before, after)
    assert after < 0.99 * before, (before, after)
    old, new = parse_tflite(nearest), parse_tflite(refined)
    weights = [o.inputs[1] for o in old.operators if o.type == kind][0]
    assert (old.constant(weights) != new.constant(weights)).any()
    assert [t.quantization for t in old.tensors] == [t.quantization for t in new.tensors]  # the scales stay


def test_refine_auto_recovers_a_depthwise_model_all_int8_and_reproducibly(tmp_path, cli):
    """The must-show: 100x per-channel spreads after BatchNorm folding cost the int8 activations
    between depthwise and pointwise layers; --refine auto raises the worst-output SQNR on held-out
    inputs by at least 3 dB with every op still int8, the manifest records what it kept and why,
    and converting again from the manifest's recipe gives the same bytes."""
    model, calib, val = depthwise_model(tmp_path)
    figures = {}
    for method in ("none", "auto"):
        out = tmp_path / f"{method}.tflite"
        code, _, err = cli("convert", model, "--data", calib, "--refine", method, "--no-cache", "-o", out)
        assert code == 0, err
        code, _, err = cli("validate", out, "-r", model, "-d", val, "--runs", "2", "--json", tmp_path / f"{method}.json")
        assert code == 0, err
        figures[method] = json.loads((tmp_path / f"{method}.json").read_text())["outputs"][0]["sqnr_db"]
    manifest = json.loads((tmp_path / "auto.edgeq.json").read_text())
    assert figures["auto"] >= figures["none"] + 3, figures
    kept = manifest["refinement"]["method"]
    assert kept in ("bias", "rounding") and "held-back" in manifest["refinement"]["judged"]
    assert not manifest["float_ops"] and manifest["recipe"]["refine"] == kept  # the recipe as carried out
    from edgeq.api import convert
    from edgeq.records.manifest import Manifest

    recipe = Manifest.from_json(manifest, "auto.edgeq.json").recipe
    again = convert(model, calib, tmp_path / "again.tflite", recipe=recipe, cache=False)
    assert again.model == (tmp_path / "auto.tflite").read_bytes()


def test_the_search_prefers_a_refined_all_int8_model_to_float_layers(tmp_path, cli):
    """Both meet the budget: layers kept in float (the search without --refine) and the refined
    all-INT8 model; with --refine the all-INT8 one is chosen and the output says why."""
    model, calib, val = depthwise_model(tmp_path)
    budget = ("--eval-data", val, "--min-sqnr", "26", "--no-cache")
    code, _, err = cli("convert", model, "--data", calib, *budget, "-o", tmp_path / "float_layers.tflite")
    plain = json.loads((tmp_path / "float_layers.edgeq.json").read_text())["search"]
    assert code == 0 and plain["met"] and plain["chosen"]["float_layers"], err
    code, out, err = cli("convert", model, "--data", calib, *budget, "--refine", "rounding", "-o", tmp_path / "refined.tflite")
    manifest = json.loads((tmp_path / "refined.edgeq.json").read_text())
    search = manifest["search"]
    assert code == 0 and search["met"] and not search["chosen"]["float_layers"] and not manifest["float_ops"], err
    assert manifest["refinement"]["method"] == "rounding" and manifest["recipe"]["refine"] == "rounding"
    assert "refined all-INT8 model met the budget" in out
    code, out, err = cli("convert", model, "--data", calib, *budget, "--refine", "auto", "-o", tmp_path / "auto.tflite")
    manifest = json.loads((tmp_path / "auto.edgeq.json").read_text())
    assert code == 0 and not manifest["search"]["chosen"]["float_layers"], err
    assert "--eval-data samples" in manifest["refinement"]["judged"]  # with a budget, auto judges where the search does
    assert manifest["recipe"]["refine"] == manifest["refinement"]["method"] != "none"


def test_a_layer_whose_weights_another_layer_shares_is_left_as_converted():
    """Refining tied weights for one layer would change the other (the converter gives both ops
    one weight tensor): such layers are skipped, named."""
    import keras
    import tensorflow as tf

    from edgeq.conversion.quantize import quantize
    from edgeq.conversion.refinement.rounding import rounded
    from edgeq.records.manifest import KeepFloat
    from edgeq.records.recipe import Recipe

    keras.utils.set_random_seed(2)
    inputs = keras.Input((16,), name="x")
    tied = keras.layers.Dense(16, name="tied")
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(tied(keras.layers.ReLU()(tied(inputs)))))
    for layer in ("tied", "head"):  # nonzero biases, which the converter keeps
        model.get_layer(layer).set_weights([w + 0.1 for w in model.get_layer(layer).get_weights()])
    data = [np.random.default_rng(i).uniform(-1, 1, (1, 16)).astype(np.float32) for i in range(32)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([d] for d in data)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    _, record = rounded(quantize(calibrated, Recipe(), KeepFloat()), calibrated, [[d] for d in data])
    shared = [s for s in record.skipped if "shared with another" in s]
    assert len(shared) == 1 and "tied" in shared[0] and record.layers == 1, record.skipped  # the head alone


def test_equal_constants_the_converter_stores_once_are_refined_apart(tmp_path):
    """The depthwise model's two pointwise layers have equal (zero) folded biases, which the
    converter stores in one buffer; each is refined on its own buffer, so they come out apart."""
    import keras
    import tensorflow as tf

    from edgeq.conversion.quantize import quantize
    from edgeq.conversion.refinement.rounding import rounded
    from edgeq.records.manifest import KeepFloat
    from edgeq.records.recipe import Recipe
    from edgeq.tflite.model import parse_tflite

    model, calib, _ = depthwise_model(tmp_path)
    data = list(np.load(calib))
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([d] for d in data)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    quantized = quantize(calibrated, Recipe(), KeepFloat())
    plain = parse_tflite(quantized)
    pointwise = [op for op in plain.operators if op.type == "CONV_2D"][1:]
    assert len({plain.tensors[op.inputs[2]].buffer for op in pointwise}) == 1  # one buffer for both biases
    refined, record = rounded(quantized, calibrated, [[d] for d in data[:48]])
    after = parse_tflite(refined)
    biases = [after.constant(op.inputs[2]) for op in [o for o in after.operators if o.type == "CONV_2D"][1:]]
    assert len({after.tensors[op.inputs[2]].buffer for op in pointwise}) == 2
    assert (biases[0] != biases[1]).any() and record.layers == 5
