"""edgeq inspect reads any .tflite without TensorFlow; figures checked against the interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from edgeq.records.manifest_file import inspect_model


def test_inspect_matches_the_interpreter(cnn_int8):
    from ai_edge_litert.interpreter import Interpreter

    summary = inspect_model(cnn_int8.output)
    interpreter = Interpreter(model_path=str(cnn_int8.output))
    detail = interpreter.get_input_details()[0]
    assert summary.inputs[0].name == detail["name"]
    assert (summary.inputs[0].scale, summary.inputs[0].zero_point) == detail["quantization"]
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert sum(c.count for c in summary.op_census.values()) == len(ops) == summary.ops_total
    assert {k: v.count for k, v in summary.op_census.items()} == {o: ops.count(o) for o in set(ops)}
    dtypes = [np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()]
    assert summary.dtype_census == {d: dtypes.count(d) for d in set(dtypes)}
    assert summary.weights.per_channel == 3 and summary.weights.float == 0
    assert 0 < summary.weights.weight_bytes < summary.bytes
    assert summary.float_bytes == cnn_int8.manifest.sizes.float_bytes  # read from the manifest beside it


def test_inspect_estimates_float_size_without_a_manifest(cnn_int8, tmp_path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(cnn_int8.output.read_bytes())
    summary = inspect_model(lone)
    exact = cnn_int8.manifest.sizes.float_bytes
    assert summary.float_bytes_source.startswith("estimate")
    assert abs(summary.float_bytes - exact) / exact < 0.15


def test_inspect_json_cli(cli, cnn_int8):
    code, stdout, _ = cli("inspect", cnn_int8.output, "--json")
    data = json.loads(stdout)
    assert code == 0 and data["ops_int8"] == data["ops_total"] and data["inputs"][0]["dtype"] == "int8"


def test_inspect_lists_float_ops_of_a_fallback_model(sin_keras, digits_calib, tmp_path, cli):
    from helpers import convert

    result = convert(sin_keras, tmp_path / "s.tflite", digits_calib, samples=8, mode="int8-fallback")
    code, stdout, _ = cli("inspect", result.output)
    assert code == 0 and "float ops (1): SIN#" in stdout


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_help_and_inspect_do_not_import_tensorflow(cnn_int8):
    run_cli = "from edgeq.cli import app\ntry:\n    app([{args}])\nexcept SystemExit:\n    pass"
    for args in ('"--help"', f'"inspect", "{cnn_int8.output}"', f'"inspect", "--json", "{cnn_int8.output}"'):
        modules = _modules_after(run_cli.format(args=args))
        assert "edgeq.cli" in modules and ("inspect" not in args or "edgeq.tflite.summary" in modules)
        assert not {m for m in modules if m.split(".")[0] in ("tensorflow", "keras")}, args


def test_inspect_after_force_reports_the_new_manifest(cnn_keras, digits_calib, tmp_path, cli):
    """A second conversion over the same output: convert and inspect describe the new model and
    its manifest, not the previous run's."""
    out = tmp_path / "m.tflite"
    code, _, err = cli("convert", cnn_keras, "--data", digits_calib, "--output", out, "--samples", "8")
    assert code == 0, err
    code, printed, err = cli(
        "convert", cnn_keras, "--data", digits_calib, "--output", out, "--samples", "24", "--per-tensor", "--force", "--json"
    )
    assert code == 0, err
    assert "written for another file" not in printed
    manifest = json.loads((tmp_path / "m.edgeq.json").read_text())
    code, shown, _ = cli("inspect", out, "--json")
    shown = json.loads(shown)
    assert shown["recipe"]["samples"] == 24 and shown["recipe"]["per_tensor"] is True
    assert shown["recipe"] == manifest["recipe"]
    assert shown["float_bytes"] == manifest["sizes"]["float_bytes"]
    assert not any("another file" in n for n in shown["notes"])
