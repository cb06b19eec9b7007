"""The Python API: in-memory sources and arrays in, typed results out; files only where asked."""

from __future__ import annotations

import numpy as np
import pytest

import edgeq
from edgeq.core.errors import OutputExistsError
from edgeq.validation.results import ValidationResult
from tests.conftest import digits_images


def test_convert_in_memory_then_validate_typed(cnn_keras, tmp_path, monkeypatch):
    import keras

    monkeypatch.chdir(tmp_path)
    model = keras.models.load_model(cnn_keras)
    calibration = digits_images(24)
    converted = edgeq.convert(model, calibration, samples=24)
    assert converted.output is None and list(tmp_path.iterdir()) == []  # nothing written
    assert converted.model[4:8] == b"TFL3" and converted.manifest.recipe.samples == 24
    report = edgeq.validate(converted.model, model, digits_images(16), runs=2, warmup=0, min_sqnr=10.0)
    assert isinstance(report.results, ValidationResult) and report.passed
    assert report.worst_sqnr_db == report.results.worst_sqnr_db > 10
    assert [g.name for g in report.results.gates] == ["min_sqnr"]


def test_saving_needs_force_to_replace(cnn_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    first = edgeq.convert(cnn_keras, digits_calib, out, samples=8)
    assert first.output == out and out.read_bytes() == first.model
    with pytest.raises(OutputExistsError):
        edgeq.convert(cnn_keras, digits_calib, out, samples=8)
    again = edgeq.convert(cnn_keras, digits_calib, out, samples=16, force=True)
    assert again.manifest.recipe.samples == 16 and again.manifest.output == "m.tflite"
    assert np.frombuffer(out.read_bytes(), np.uint8).size == len(again.model)
