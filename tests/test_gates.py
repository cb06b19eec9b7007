"""Gates on typed figures: passed, failed, or not applicable to a runner that cannot serve them."""

from __future__ import annotations

import re

import pytest

from edgeq.errors import UsageError
from edgeq.gates import Figures, evaluate, passed
from edgeq.run.devices import Profile, parse_benchmark_model
from edgeq.run.protocol import Measurement
from edgeq.run.runner import BenchmarkModelRunner
from edgeq.validation.devices import device_result
from helpers import FIXTURES

RECORDED = FIXTURES / "benchmark_model" / "android_logcat_percentiles.txt"


def test_bounds_pass_and_fail_on_the_right_side():
    figures = Figures(top1_drop_pts=0.4, agreement=0.97, worst_sqnr_db=30.0, int8_p50_ms=2.0, speedup=1.5)
    results = {r.name: r.status for r in evaluate(
        {"max_drop": 0.5, "min_agreement": 0.98, "min_sqnr": 30.0, "max_latency_ms": 1.0, "min_speedup": 1.5}, figures)}
    assert results == {"max_drop": "passed", "min_agreement": "failed", "min_sqnr": "passed",
                       "max_latency_ms": "failed", "min_speedup": "passed"}


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
    from edgeq.validation.compare import ValidateOptions

    with pytest.raises(UsageError, match="unknown gate"):
        ValidateOptions(gates={"max_dorp": 1.0})


def _recorded(scale_p50: float, scale_mean: float) -> Measurement:
    """The recorded benchmark_model output with its median and mean scaled apart (a float run)."""
    text = RECORDED.read_text()
    text = re.sub(r"median=(\d+)", lambda m: f"median={int(int(m.group(1)) * scale_p50)}", text)
    text = re.sub(r"avg=(\d+)", lambda m: f"avg={int(int(m.group(1)) * scale_mean)}", text, count=1)
    found = parse_benchmark_model(text)
    return Measurement(None, {k: found[k] for k in ("p50", "mean", "std", "min", "max", "p5", "p95")}, "xnnpack", 4, 0,
                       found["runs"], "benchmark_model")


def test_latency_only_device_speedup_is_p50_based_and_its_accuracy_gates_are_na():
    int8, floating = _recorded(1.0, 1.0), _recorded(2.0, 3.0)  # p50 ratio 2, mean ratio 3
    runner = BenchmarkModelRunner(Profile("pixel", transport="adb", serial="X", benchmark_binary="/data/local/tmp/bm"))
    device = device_result(runner, None, int8, floating, None, 5)
    assert device.latency.speedup == pytest.approx(floating.timings_ms["p50"] / int8.timings_ms["p50"], rel=1e-3)
    assert device.latency.speedup != pytest.approx(floating.timings_ms["mean"] / int8.timings_ms["mean"], rel=1e-2)
    assert not device.capabilities.scores_outputs and device.outputs == ()
    gates = evaluate({"max_drop": 0.5, "min_agreement": 0.99, "min_speedup": 1.5}, device.figures)
    assert [g.status for g in gates] == ["n/a", "n/a", "passed"]
    assert passed(gates)
