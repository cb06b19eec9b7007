"""--refine bias: the weight-rounding shift taken out of the int32 biases (Nagel et al. 2019)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _calibrated_conv(padding: str = "valid"):
    """One Conv2D layer (no activation) and its calibrated float graph, as TensorFlow's calibrator writes it."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 8), name="x")
    model = keras.Model(inputs, keras.layers.Conv2D(16, 3, padding=padding, name="conv")(inputs))
    rng = np.random.default_rng(0)
    data = [rng.uniform(0.2, 1.0, (1, 16, 16, 8)).astype(np.float32) for _ in range(96)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([d] for d in data[:64])
    converter._experimental_calibrate_only = True
    return converter.convert(), data


def _outputs(model: bytes, data: list[np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    found = []
    for d in data:
        s, z = inp["quantization"]
        interpreter.set_tensor(inp["index"], np.clip(np.round(d / s) + z, -128, 127).astype(inp["dtype"]) if s else d)
        interpreter.invoke()
        value = interpreter.get_tensor(out["index"]).astype(np.float64)
        s, z = out["quantization"]
        found.append(s * (value - z) if s else value)
    return np.concatenate(found)


def test_bias_correction_removes_the_mean_shift_it_measures():
    """On held-out inputs, the per-channel mean output error after correction is below 10% of before."""
    from edgeq.conversion.quantize import quantize
    from edgeq.conversion.refinement.bias import bias_corrected
    from edgeq.records.manifest import KeepFloat
    from edgeq.records.recipe import Recipe

    calibrated, data = _calibrated_conv()
    quantized = quantize(calibrated, Recipe(), KeepFloat())
    corrected, record = bias_corrected(quantized, calibrated, [[d] for d in data[:64]])
    assert record.layers == 1 and record.largest_shift > 0 and corrected != quantized
    reference = _outputs(calibrated, data[64:])
    before = np.abs((_outputs(quantized, data[64:]) - reference).reshape(-1, 16).mean(0))
    after = np.abs((_outputs(corrected, data[64:]) - reference).reshape(-1, 16).mean(0))
    assert after.mean() < 0.1 * before.mean()


def test_refine_bias_is_in_the_recipe_and_the_manifest(cnn_keras, digits_calib, tmp_path, cli):
    import json

    code, out, err = cli(
        "convert", cnn_keras, "--data", digits_calib, "--samples", "48", "--refine", "bias", "-o", tmp_path / "m.tflite"
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "m.edgeq.json").read_text())
    assert manifest["recipe"]["refine"] == "bias" and manifest["refinement"]["layers"] >= 2 and "refine: bias corrected" in out
    code, out, err = cli(
        "convert", cnn_keras, "--data", digits_calib, "--samples", "48", "--refine", "auto", "-o", tmp_path / "a.tflite"
    )
    assert code == 0 and "held-back calibration samples" in out, err
    code, _, err = cli("convert", cnn_keras, "--refine", "bias", "--mode", "float16", "-o", tmp_path / "f.tflite")
    assert code == 2 and "--refine bias corrects int8 layers" in err


def test_float_twins_are_paired_by_name_when_the_quantizer_swaps_two_like_ops():
    """MediaPipe's selfie segmentation: the quantizer put conv2d_30 before conv2d_29 (both 128x1x1x32
    kernels), so pairing by position refitted each against the other's float weights (and crashed
    --refine rounding on their inputs' shapes). Names come first; position only for the rest."""
    from types import SimpleNamespace as NS

    from edgeq.conversion.refinement.layers import _twins

    def graph(order: list[str], fused: dict[str, str]):
        tensors, operators = [], []
        for name in order:
            tensors += [NS(name=fused.get(name, name), shape=(128, 1, 1, 32)), NS(name=f"{name}/kernel", shape=(128, 1, 1, 32))]
            operators.append(NS(type="CONV_2D", inputs=[0, len(tensors) - 1], outputs=[len(tensors) - 2]))
        return NS(tensors=tensors, operators=operators)

    floating = graph(["conv2d_29", "conv2d_30"], {})
    quantized = graph(["conv2d_30", "conv2d_29"], {"conv2d_29": "re_lu_12;conv2d_29"})
    twins = _twins(floating, quantized)
    assert {i: floating.tensors[op.outputs[0]].name for i, op in twins.items()} == {0: "conv2d_30", 1: "conv2d_29"}
    renamed = graph(["conv2d_29", "Identity"], {})  # a graph output the quantizer renamed: by position among the rest
    assert {i: floating.tensors[op.outputs[0]].name for i, op in _twins(floating, renamed).items()} == {
        0: "conv2d_29",
        1: "conv2d_30",
    }


def test_refine_auto_takes_a_refinement_only_when_its_gain_is_sure(trained, digits_calib, tmp_path, cli):
    """Judged on 16 held-back samples: a refinement is kept only when its gain's interval does not
    reach below zero; otherwise the converted bytes stay. On the demo CNN here bias gained +0.40 dB with an
    interval of -0.30 to +1.22 dB, so the model stayed as converted (the old rule took bias)."""
    import json
    import re

    keras_path, _, _ = trained
    common = ("convert", keras_path, "--data", digits_calib, "--samples", "48", "--no-cache")
    assert cli(*common, "-o", tmp_path / "none.tflite")[0] == 0
    code, out, err = cli(*common, "--refine", "auto", "-o", tmp_path / "auto.tflite")
    assert code == 0, err
    refinement = json.loads((tmp_path / "auto.edgeq.json").read_text())["refinement"]
    judged = refinement["judged"]
    found = re.findall(r"(bias|rounding) ([+-][\d.]+) dB \(90% interval ([+-][\d.]+) to", judged)
    gains = {m: (float(db), float(low)) for m, db, low in found}
    assert set(gains) == {"bias", "rounding"} and "over 16 samples" in judged, judged
    sure = [m for m, (db, low) in gains.items() if db > 0 and low >= 0]
    assert (refinement["method"] == "none") == (not sure), judged
    if not sure:
        assert (tmp_path / "auto.tflite").read_bytes() == (tmp_path / "none.tflite").read_bytes()
        assert "kept the model as converted" in judged
