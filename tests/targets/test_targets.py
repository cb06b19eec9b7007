"""Target compatibility predictions on real converted models, checked against the real XNNPACK
delegate, and the edgetpu_compiler report parser on recorded compiler output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from helpers import FIXTURES, convert, validate

from edgeq.run.litert import LiteRTRunner
from edgeq.targets import Finding, TargetReport, check_target
from edgeq.targets.edgetpu_toolchain import Difference, OperatorRow, compare, parse_compiler_output
from edgeq.tflite.model import read_tflite

EDGETPU = FIXTURES / "edgetpu"


@pytest.fixture(scope="module")
def hardswish_int8(hardswish_keras, digits_calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("hswish") / "hswish_int8.tflite"
    return convert(hardswish_keras, out, digits_calib, samples=32, targets=("edgetpu",))


def test_compatible_cnn_maps_every_op_to_the_edge_tpu(cnn_int8):
    report = check_target(read_tflite(cnn_int8.output), "edgetpu")
    assert report.first_unsupported_op is None
    assert report.cpu_ops == 0 and report.target_ops == len(report.ops) > 3
    assert report.verdict.startswith("every op maps to the Edge TPU")


def test_unsupported_op_in_the_middle_is_named_and_the_cpu_tail_counted(hardswish_int8):
    model = read_tflite(hardswish_int8.output)
    types = [op.type for op in model.operators]
    at = types.index("HARD_SWISH")
    assert 0 < at < len(types) - 1  # really in the middle
    report = check_target(model, "edgetpu")
    assert report.first_unsupported_op.type == "HARD_SWISH" and report.first_unsupported_op.index == at
    assert report.target_ops == at and report.cpu_ops == len(types) - at
    after = [f for f in report.ops if f.index > at]
    assert all(not f.on_target and "follows op" in f.reason for f in after)


def test_float_model_is_not_quantized_for_the_edge_tpu(cnn_keras, tmp_path):
    model = convert(cnn_keras, tmp_path / "f16.tflite", mode="float16").output
    report = check_target(read_tflite(model), "edgetpu")
    assert report.verdict.startswith("not quantized")
    assert report.target_ops == 0


def test_convert_target_warns_with_the_findings(hardswish_int8):
    warning = next(w for w in hardswish_int8.warnings if w.startswith("Edge TPU"))
    n = len(read_tflite(hardswish_int8.output).operators)
    assert f"ops 1–{n - 1} will run on the CPU because HARD_SWISH (op 1)" in warning
    assert hardswish_int8.manifest.targets["edgetpu"]["first_unsupported_op"]["type"] == "HARD_SWISH"


def test_inspect_target_json_without_tensorflow(hardswish_int8):
    code = (
        "import sys, json; from edgeq.cli import run; sys.argv = ['edgeq', 'inspect', sys.argv[1], '--json', "
        "'-t', 'edgetpu', '-t', 'nnapi', '-t', 'xnnpack']\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "print('TF', sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(hardswish_int8.output)], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out[: out.rindex("TF")])
    assert out.strip().endswith("TF []")
    for target in ("edgetpu", "nnapi", "xnnpack"):
        t = data["targets"][target]
        assert {"first_unsupported_op", "target_ops", "cpu_ops", "ops", "verdict"} <= set(t)
        assert (
            t["target_ops"] + t["cpu_ops"]
            == len(t["ops"])
            == data["ops_total"] + sum(c["count"] for k, c in data["op_census"].items() if k in ("QUANTIZE", "DEQUANTIZE"))
        )
    assert data["targets"]["edgetpu"]["first_unsupported_op"]["type"] == "HARD_SWISH"
    assert data["targets"]["xnnpack"]["first_unsupported_op"]["type"] == "HARD_SWISH"


def test_nnapi_gives_the_android_level_and_the_deprecation(cnn_int8, cnn_keras, tmp_path):
    int8 = check_target(read_tflite(cnn_int8.output), "nnapi")
    assert int8.extra["min_android_api"] == 30  # signed int8 tensors need NNAPI 1.3
    assert any("deprecated from Android 15 (API 35)" in n for n in int8.notes)
    floating = check_target(read_tflite(convert(cnn_keras, tmp_path / "f.tflite", mode="float16").output), "nnapi")
    assert floating.extra["min_android_api"] == 27


@pytest.mark.parametrize("mode", ["int8", "dynamic", "float16", "int8-fallback"])
def test_xnnpack_prediction_equals_the_real_delegate(mode, sin_keras, hardswish_keras, cnn_keras, digits_calib, tmp_path):
    models = {"int8": hardswish_keras, "dynamic": cnn_keras, "float16": cnn_keras, "int8-fallback": sin_keras}
    data = digits_calib if mode.startswith("int8") else None
    path = convert(models[mode], tmp_path / "m.tflite", data, mode=mode, samples=16).output
    runner = LiteRTRunner(path)
    report = check_target(runner.model, "xnnpack")
    assert report.target_ops == runner.delegated_nodes
    assert dict(Counter(f.type for f in report.ops if not f.on_target)) == runner.kept_ops


def test_validate_target_xnnpack_records_the_delegate_check(cnn_int8, cnn_keras, digits_calib):
    result = validate(cnn_int8.output, cnn_keras, digits_calib, limit=8, runs=3, warmup=1, target="xnnpack")
    check = result.target.delegate_check
    assert check.agrees is True
    assert check.actual_delegated == check.predicted_delegated == result.latency.delegated_nodes > 0


def test_validate_target_edgetpu_without_compiler_or_runtime_says_so(cnn_int8, cnn_keras, digits_calib, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = validate(cnn_int8.output, cnn_keras, digits_calib, limit=8, runs=3, warmup=1, target="edgetpu")
    target = result.target
    assert target.ran_on_target is False and target.compiler is None
    assert target.prediction["first_unsupported_op"] is None
    notes = " ".join(target.notes)
    assert "edgetpu_compiler is not on PATH" in notes and "libedgetpu.so.1 cannot be loaded" in notes
    assert result.latency.delegate == "xnnpack"  # what did run, said plainly


def test_validate_target_edgetpu_compiles_with_the_compiler_on_path(
    hardswish_int8, hardswish_keras, digits_calib, tmp_path, monkeypatch
):
    """A stand-in compiler replays a recorded report: this checks the plumbing, not the compiler."""
    tool = tmp_path / "bin" / "edgetpu_compiler"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\ncat {EDGETPU / "frc_model_stdout.txt"}\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    result = validate(hardswish_int8.output, hardswish_keras, digits_calib, limit=4, runs=2, warmup=0, target="edgetpu")
    compiler = result.target.compiler
    assert (tmp_path / "argv").read_text().split()[:2] == ["-s", "-o"]
    assert compiler.version is None and compiler.ops_on_edgetpu == 138
    assert compiler.comparison.agrees is False
    assert Difference("HARD_SWISH", 1, 0) in compiler.comparison.differences
    assert result.target.ran_on_target is False


def test_edgetpu_delegate_without_the_library_is_exit_2(cnn_int8, cnn_keras, digits_calib, cli):
    code, _, err = cli("validate", str(cnn_int8.output), "-r", str(cnn_keras), "-d", str(digits_calib), "--delegate", "edgetpu")
    assert code == 2 and "libedgetpu.so.1" in err and len(err.strip().splitlines()) == 1


def test_compiler_log_parser_on_recorded_operation_log():
    """tiny_yolo_edgetpu.log: compiler 14.1 operation log (see fixtures/edgetpu/README.md)."""
    report = parse_compiler_output((EDGETPU / "tiny_yolo_edgetpu.log").read_text())
    assert report.version == "14.1.317412892"
    assert report.ops_on_edgetpu == 6 + 11 + 2 and report.ops_on_cpu == 1 + 1 + 2 + 1 + 1
    assert report.not_mapped() == Counter({"CONV_2D": 2, "QUANTIZE": 2, "CONCATENATION": 1, "RESIZE_NEAREST_NEIGHBOR": 1})
    assert OperatorRow("RESIZE_NEAREST_NEIGHBOR", 1, "Operation version not supported") in report.operators


def test_compiler_log_parser_on_recorded_console_output():
    """frc_model_stdout.txt: compiler 16.0 console summary and partial table (see fixtures/edgetpu/README.md)."""
    report = parse_compiler_output((EDGETPU / "frc_model_stdout.txt").read_text())
    assert (report.subgraphs, report.total_ops, report.ops_on_edgetpu, report.ops_on_cpu) == (1, 141, 138, 3)
    assert report.others_mapped and sum(report.not_mapped().values()) == 3
    ops = [Finding(i, t, False) for i, t in enumerate(("RESHAPE", "CONCATENATION", "QUANTIZE"))] + [
        Finding(3 + i, "CONV_2D", True) for i in range(138)
    ]
    predicted = TargetReport("edgetpu", "Edge TPU", "", ops, None)
    assert compare(predicted, report).agrees is True
    predicted.ops[0] = Finding(0, "SOFTMAX", False)
    diff = compare(predicted, report)
    assert not diff.agrees and Difference("RESHAPE", 0, 1) in diff.differences


@pytest.mark.tf
def test_int32_index_arithmetic_is_predicted_off_xnnpack_as_the_real_delegate_leaves_it(tmp_path):
    """A float model that computes an index from the data: CAST to int32, SUB and MINIMUM on int32
    only, then GATHER. XNNPACK takes the float ops and leaves the int32 arithmetic (issue 38)."""
    import numpy as np
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
        def __call__(self, x):
            y = tf.nn.relu(x * 2.0)
            index = tf.minimum(tf.cast(tf.reduce_sum(y), tf.int32) - 3, 7)
            return {"out": y + tf.gather(y, tf.maximum(index, 0), axis=1)}

    net = Net()
    path = tmp_path / "index.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net).convert())
    runner = LiteRTRunner(path)
    report = check_target(runner.model, "xnnpack")
    int32_only = [f for f in report.ops if "int32 tensors only" in (f.reason or "")]
    assert int32_only and {f.type for f in int32_only} & {"SUB", "MINIMUM", "MAXIMUM"}
    assert report.target_ops == runner.delegated_nodes
    assert dict(Counter(f.type for f in report.ops if not f.on_target)) == runner.kept_ops
    np.testing.assert_array_equal(runner.run([np.ones((1, 8), np.float32)])[0].shape, (1, 8))
