"""Errors from the conversion's child process name their source: edgeq's own code is an internal
error (exit 3), TensorFlow's is the converter's; -v shows the child's traceback."""

from __future__ import annotations

import json

import pytest

from edgeq.host.isolation import ChildError, run_isolated
from edgeq.scoring.metrics import sqnr_db


def test_an_exception_in_edgeqs_code_in_the_child_is_ours_with_its_traceback():
    with pytest.raises(ChildError) as caught:
        run_isolated(sqnr_db, "not a number", 1.0)
    assert caught.value.ours and "TypeError" in str(caught.value)
    assert "edgeq/scoring/metrics.py" in caught.value.child_traceback and "sqnr_db" in caught.value.child_traceback


def test_an_exception_in_another_library_is_not_ours():
    with pytest.raises(ChildError) as caught:
        run_isolated(json.loads, "{")
    assert not caught.value.ours and "json" in caught.value.child_traceback


def test_convert_maps_edgeqs_own_child_exception_to_exit_3(cnn_keras, digits_calib, tmp_path, monkeypatch, cli):
    import edgeq.conversion.converter as converter

    monkeypatch.setattr(converter, "run_isolated", lambda function, *args: run_isolated(sqnr_db, "injected", 1.0))
    code, _, err = cli(
        "convert", str(cnn_keras), "--data", str(digits_calib), "--output", str(tmp_path / "m.tflite"), "--no-cache"
    )
    assert code == 3 and err.startswith("edgeq: error: internal error: TypeError") and "TFLite converter" not in err
    code, _, err = cli(
        "-v", "convert", str(cnn_keras), "--data", str(digits_calib), "--output", str(tmp_path / "m.tflite"), "--no-cache"
    )
    assert code == 3 and "in its child process" in err and "edgeq/scoring/metrics.py" in err


@pytest.mark.tf  # the conversion child imports TensorFlow before it reads the file
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_stablehlo_op_is_named_with_its_rewrite_before_calibration_with_any_jobs(tmp_path, cli, jobs):
    """litert-torch exports nn.AdaptiveAvgPool2d((None, 1)) as STABLEHLO_REDUCE_WINDOW, which
    TensorFlow's quantizer refuses; edgeq names it and the equal rewrite, the same with any --jobs.
    (A small float file whose one op code is set to that op: the check reads the file, before any run.)"""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from helpers import FIXTURES

    root = schema.ModelT.InitFromPackedBuf(bytearray((FIXTURES / "tflite" / "tiny_float.tflite").read_bytes()), 0)
    code = next(c for c in root.operatorCodes if c.builtinCode == schema.BuiltinOperator.SOFTMAX)
    code.builtinCode, code.deprecatedBuiltinCode = schema.BuiltinOperator.STABLEHLO_REDUCE_WINDOW, 127
    builder = flatbuffers.Builder(4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    model = tmp_path / "pooled.tflite"
    model.write_bytes(bytes(builder.Output()))
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8, 1), np.float32))
    code, out, err = cli("convert", model, "--data", tmp_path / "x.npy", "-o", tmp_path / "m.tflite", "--jobs", jobs)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "STABLEHLO_REDUCE_WINDOW x1" in err and "x.mean(-1)" in err and "nothing was calibrated" in err
    assert not (tmp_path / "m.tflite").exists()
