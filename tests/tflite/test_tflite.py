"""The flatbuffer stages on checked-in tiny models (tests/fixtures/tflite/make.py): reading,
summarising, the manifest's recipe, running and pairing. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES

from edgeq.core.errors import ModelError, UsageError
from edgeq.run.litert import LiteRTRunner
from edgeq.run.pairing import pair
from edgeq.targets import check_target
from edgeq.tflite.model import read_tflite
from edgeq.tflite.summary import summarize

TFLITE = FIXTURES / "tflite"
INT8, FLOAT, NOSIG = (TFLITE / n for n in ("tiny_int8.tflite", "tiny_float.tflite", "tiny_int8_nosig.tflite"))


def test_int8_model_reads_as_full_integer_with_its_signature():
    model = read_tflite(INT8)
    summary = summarize(model)
    assert summary.precision == "int8" and summary.float_ops == []
    (image,) = summary.inputs
    assert image.dtype == "int8" and image.scale > 0 and -128 <= image.zero_point <= 127
    assert summary.weights.per_channel >= 1  # the conv's weights, per output channel
    assert [(s.key, [p.key for p in s.inputs]) for s in summary.signatures] == [("serving_default", ["image"])]


def test_float_and_signatureless_models_are_described_as_such():
    assert summarize(read_tflite(FLOAT)).precision == "float"
    assert any("no SignatureDef" in n for n in summarize(read_tflite(NOSIG)).notes)


def test_runner_outputs_equal_the_float_model_within_quantization_error():
    sample = np.random.default_rng(1).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32)
    int8, ref = LiteRTRunner(INT8), LiteRTRunner(FLOAT)
    got, want = int8.run([sample])[0], ref.run([sample])[0]
    assert got.shape == want.shape == (1, 3) and abs(float(got.sum()) - 1) < 0.02
    assert np.abs(got - want).max() < 0.05
    assert pair("outputs", int8.output_ports, ref.output_ports, False).method == "signature key"


def test_ports_without_keys_pair_by_unique_shape_or_not_at_all():
    nosig, ref = LiteRTRunner(NOSIG), LiteRTRunner(FLOAT)
    assert pair("inputs", nosig.input_ports, ref.input_ports, False).method in ("tensor name", "shape")
    with pytest.raises(ModelError, match="cannot pair|has 1"):
        pair("outputs", nosig.output_ports, ref.output_ports + ref.output_ports, False)


def test_targets_read_the_models_own_ops():
    report = check_target(read_tflite(INT8), "edgetpu")
    assert report.to_dict()["ops"] and {o["type"] for o in report.to_dict()["ops"]} >= {"CONV_2D", "FULLY_CONNECTED"}


def test_the_local_runner_is_a_runner_and_measures_like_run_raw():
    from edgeq.run.protocol import Runner

    runner = LiteRTRunner(INT8)
    assert isinstance(runner, Runner) and runner.capabilities.scores_outputs
    batch = [
        runner.quantize_inputs([np.random.default_rng(seed).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32)])[0]
        for seed in range(3)
    ]
    stacked = [np.stack(batch)]  # samples on a new leading axis: (N, *input shape)
    measured = runner.measure(INT8, stacked, warmup=1, runs=4)
    for i, sample in enumerate(batch):
        np.testing.assert_array_equal(measured.outputs[0][i], runner.run_raw([sample])[0])
    assert len(measured.timings_ms.samples) == 4 and measured.timings_ms.p50 > 0
    with pytest.raises(UsageError, match="this runner holds tiny_int8.tflite, not tiny_float.tflite"):
        runner.measure(FLOAT, stacked, 0, 1)
