"""The three renderers on one checked-in results file (golden files), with a latency-only device:
the same figures, "n/a" for what a runner could not measure, never a failure for it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import FIXTURES, RecordedAdb

from edgeq.report.documents import html_page, markdown
from edgeq.report.text import validation_text
from edgeq.run.devices.benchmark_model import BenchmarkModelRunner
from edgeq.run.devices.profiles import Profile
from edgeq.scoring.gates import evaluate, passed
from edgeq.validation.devices import device_result
from edgeq.validation.results import ValidationResult

GATES = {"max_drop": 0.5, "min_speedup": 0.1}


@pytest.fixture
def results() -> ValidationResult:
    results = ValidationResult.from_json(json.loads((FIXTURES / "results" / "digits_validation.json").read_text()))
    runner = BenchmarkModelRunner(
        Profile(
            "pixel-8",
            transport="adb",
            serial="X",
            benchmark_binary="/data/local/tmp/bm",
            delegates=("nnapi",),
            threads=4,
            device_samples=0,
        ),
        RecordedAdb(),
    )
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


def test_a_low_sqnr_whose_decisions_hold_is_not_called_broken(results):
    """A CTC recognizer's log-softmax: 6.7 dB, while every step's argmax and every decoded
    sequence agree (as seen on a real one): said as such, not as likely broken."""
    from edgeq.report.text import broken_notes, low_sqnr_notes, validation_text
    from edgeq.scoring.metrics import OutputScore, Slice

    held = OutputScore("logits", "sequence", sqnr_db=6.72, agreement=0.9995, sequence_match=1.0, worst_slice=Slice(1, 1, 6.57))
    lost = OutputScore("boxes", "values", sqnr_db=6.72)
    checked = replace(results, outputs=(held, lost))
    assert [n for n in broken_notes(checked) if "'logits'" in n] == [] and len(broken_notes(checked)) == 1
    assert "yet its decisions hold (agreement 99.95% per step, sequences matching 100.00%)" in low_sqnr_notes(checked)[0]
    text = validation_text(checked)
    assert "LOW SQNR  output 'logits'" in text and "BROKEN    output 'boxes'" in text
    assert "6.57 dB  << below 10 dB" in text and "far below the output" not in text  # 6.57 is not far below 6.72
    assert "Low SQNR, decisions hold" in markdown(checked) and "Low SQNR, decisions hold" in html_page(checked)
