"""Gates on typed figures: passed, failed, or not applicable to a runner that cannot serve them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import RecordedAdb

from edgeq.core.errors import UsageError
from edgeq.run.devices.benchmark_model import BenchmarkModelRunner
from edgeq.run.devices.profiles import Profile
from edgeq.run.protocol import Measurement
from edgeq.scoring.gates import Figures, evaluate, passed
from edgeq.validation.devices import device_result


def test_bounds_pass_and_fail_on_the_right_side():
    figures = Figures(top1_drop_pts=0.4, agreement=0.97, worst_sqnr_db=30.0, int8_p50_ms=2.0, speedup=1.5)
    results = {
        r.name: r.status
        for r in evaluate(
            {"max_drop": 0.5, "min_agreement": 0.98, "min_sqnr": 30.0, "max_latency_ms": 1.0, "min_speedup": 1.5}, figures
        )
    }
    assert results == {
        "max_drop": "passed",
        "min_agreement": "failed",
        "min_sqnr": "passed",
        "max_latency_ms": "failed",
        "min_speedup": "passed",
    }


def test_a_missing_figure_fails_where_the_runner_could_have_given_it():
    (gate,) = evaluate({"max_drop": 1.0}, Figures(top1_drop_pts=None))
    assert gate.status == "failed" and "no labels" in gate.note and not passed([gate])


def test_accuracy_gates_are_not_applicable_to_a_latency_only_runner():
    figures = Figures(int8_p50_ms=3.0, speedup=0.8, scores_outputs=False)
    results = evaluate({"max_drop": 0.5, "min_sqnr": 20.0, "min_speedup": 1.0}, figures)
    assert [r.status for r in results] == ["n/a", "n/a", "failed"]
    assert passed(results[:2]) and not passed(results)
    assert results[0].passed is None and results[0].status == "n/a"


def test_unknown_gate_is_a_usage_error():
    from edgeq.validation.options import ValidateOptions

    with pytest.raises(UsageError, match="unknown gate"):
        ValidateOptions(gates={"max_dorp": 1.0})


PIXEL = Profile(
    "pixel",
    transport="adb",
    serial="X",
    benchmark_binary="/data/local/tmp/bm",
    delegates=("xnnpack",),
    threads=4,
    device_samples=0,
)  # latency only


def _recorded(scale_p50: float, scale_mean: float) -> Measurement:
    """BenchmarkModelRunner.measure itself, over a transport that answers with the recorded
    benchmark_model output, its median and mean scaled apart (a float run)."""
    adb = RecordedAdb(scale_p50, scale_mean)
    measured = BenchmarkModelRunner(PIXEL, adb).measure(Path("model.tflite"), [], 0, 50)
    assert any("--graph=" in " ".join(c) and "--num_threads=4" in c for c in adb.commands)
    return measured


def test_the_adb_runner_reads_its_timings_from_benchmark_model():
    measured = _recorded(1.0, 1.0)
    assert measured.outputs is None and measured.runtime == "benchmark_model" and measured.delegate == "xnnpack"
    assert measured.timings_ms.p50 > 0 and measured.samples_ms == [measured.timings_ms.p50]


def test_latency_only_device_speedup_is_p50_based_and_its_accuracy_gates_are_na():
    int8, floating = _recorded(1.0, 1.0), _recorded(2.0, 3.0)  # p50 ratio 2, mean ratio 3
    runner = BenchmarkModelRunner(PIXEL)
    device = device_result(runner, None, int8, floating, None, 5)
    assert device.latency.speedup == pytest.approx(floating.timings_ms.p50 / int8.timings_ms.p50, rel=1e-3)
    assert device.latency.speedup != pytest.approx(floating.timings_ms.mean / int8.timings_ms.mean, rel=1e-2)
    assert not device.capabilities.scores_outputs and device.outputs == ()
    gates = evaluate({"max_drop": 0.5, "min_agreement": 0.99, "min_speedup": 1.5}, device.figures)
    assert [g.status for g in gates] == ["n/a", "n/a", "passed"]
    assert passed(gates)
