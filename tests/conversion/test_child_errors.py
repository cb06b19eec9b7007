"""Errors from the conversion's child process name their source: edgeq's own code is an internal
error (exit 3), TensorFlow's is the converter's; -v shows the child's traceback."""

from __future__ import annotations

import json

import pytest

from edgeq.isolation import ChildError, run_isolated
from edgeq.metrics import sqnr_db


def test_an_exception_in_edgeqs_code_in_the_child_is_ours_with_its_traceback():
    with pytest.raises(ChildError) as caught:
        run_isolated(sqnr_db, "not a number", 1.0)
    assert caught.value.ours and "TypeError" in str(caught.value)
    assert "edgeq/metrics.py" in caught.value.child_traceback and "sqnr_db" in caught.value.child_traceback


def test_an_exception_in_another_library_is_not_ours():
    with pytest.raises(ChildError) as caught:
        run_isolated(json.loads, "{")
    assert not caught.value.ours and "json" in caught.value.child_traceback


def test_convert_maps_edgeqs_own_child_exception_to_exit_3(cnn_keras, digits_calib, tmp_path, monkeypatch, cli):
    import edgeq.conversion.converter as converter

    monkeypatch.setattr(converter, "run_isolated", lambda function, *args: run_isolated(sqnr_db, "injected", 1.0))
    code, _, err = cli("convert", str(cnn_keras), "--data", str(digits_calib), "--output", str(tmp_path / "m.tflite"), "--no-cache")
    assert code == 3 and err.startswith("edgeq: error: internal error: TypeError") and "TFLite converter" not in err
    code, _, err = cli("-v", "convert", str(cnn_keras), "--data", str(digits_calib), "--output", str(tmp_path / "m.tflite"), "--no-cache")
    assert code == 3 and "in its child process" in err and "edgeq/metrics.py" in err
