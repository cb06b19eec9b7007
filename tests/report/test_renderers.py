"""The three renderers on one checked-in results file (golden files), with a latency-only device:
the same figures, "n/a" for what a runner could not measure, never a failure for it."""

from __future__ import annotations

import json
from pathlib import Path
import os
import re
from dataclasses import replace

import pytest

from edgeq.gates import evaluate, passed
from edgeq.report.documents import html_page, markdown
from edgeq.report.text import validation_text
from edgeq.run.profiles import Profile
from edgeq.run.benchmark_model import BenchmarkModelRunner
from edgeq.validation.devices import device_result
from edgeq.validation.results import ValidationResult
from helpers import FIXTURES, RecordedAdb

GATES = {"max_drop": 0.5, "min_speedup": 0.1}


@pytest.fixture
def results() -> ValidationResult:
    results = ValidationResult.from_json(json.loads((FIXTURES / "results" / "digits_validation.json").read_text()))
    runner = BenchmarkModelRunner(Profile("pixel-8", transport="adb", serial="X", benchmark_binary="/data/local/tmp/bm",
                                          delegates=("nnapi",), threads=4, device_samples=0), RecordedAdb())
    measured = runner.measure(Path("model.tflite"), [], 2, 20)
    device = device_result(runner, None, measured, measured, None, 5)
    gates = evaluate(GATES, device.figures)
    return replace(results, devices=(replace(device, gates=tuple(gates), passed=passed(gates)),))


def _golden(name: str, text: str) -> None:
    path = FIXTURES / "results" / name
    if os.environ.get("EDGEQ_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if on purpose, rerun with EDGEQ_UPDATE_GOLDEN=1"


def test_text_report(results):
    text = validation_text(results)
    _golden("digits_validation.golden.txt", text)
    assert "FAIL" not in text and "latency only" in text


def test_markdown_report(results):
    _golden("digits_validation.golden.md", markdown(results))


def test_html_report(results):
    page = re.sub(r'src="data:image/png;base64,[^"]*"', 'src="data:image/png;base64,..."', html_page(results))
    _golden("digits_validation.golden.html", page)


def test_results_round_trip_through_json(results):
    assert ValidationResult.from_json(json.loads(json.dumps(results.to_json()))) == results


def test_every_renderer_says_na_for_a_figure_the_device_lacks(results):
    assert results.devices[0].passed is True
    assert [g.status for g in results.devices[0].gates] == ["n/a", "passed"]
    for rendered in (validation_text(results), markdown(results), html_page(results)):
        assert "n/a" in rendered


def test_renderers_show_the_same_speedup(results):
    speedup = f"{results.latency.speedup:.2f}"
    for rendered in (validation_text(results), markdown(results), html_page(results)):
        assert speedup in rendered
