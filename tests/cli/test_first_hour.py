"""What a newcomer meets first: no silent wrong answers, options that mean what they say,
help and progress that tell the truth."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from helpers import convert

from edgeq.core.errors import UsageError
from edgeq.data.samples import Preprocessing

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def pad_model(cnn_keras, digits_calib, tmp_path_factory):
    """Converted with --range -1,1 --resize pad: the manifest's preprocessing is not the default."""
    out = tmp_path_factory.mktemp("pad") / "pad.tflite"
    return convert(cnn_keras, out, digits_calib, samples=64, preprocessing=Preprocessing(value_range="-1,1", resize="pad"))


def _validate(cli, model, reference, data, *flags):
    out = model.output.parent / f"r{abs(hash(flags))}.json"
    code, _, err = cli(
        "validate",
        model.output,
        "--reference",
        reference,
        "--data",
        data,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
        out,
        "--force",
        *flags,
    )
    assert code == 0, err
    return json.loads(out.read_text())


def test_one_preprocessing_flag_keeps_the_rest_of_the_manifests(pad_model, cnn_keras, digits_calib, cli):
    val = digits_calib.parent / "val"
    plain = _validate(cli, pad_model, cnn_keras, val)
    one_flag = _validate(cli, pad_model, cnn_keras, val, "--resize", "pad")
    assert one_flag["accuracy"]["agreement"] == plain["accuracy"]["agreement"]
    assert one_flag["outputs"][0]["sqnr_db"] == plain["outputs"][0]["sqnr_db"]
    assert (
        one_flag["preprocessing"]["origins"]["value_range"] == "manifest"
        and one_flag["preprocessing"]["origins"]["resize"] == "flag"
    )
    assert one_flag["preprocessing"]["settings"]["value_range"] == "-1,1"
    other_range = _validate(cli, pad_model, cnn_keras, val, "--range", "0,1")
    assert (
        other_range["preprocessing"]["origins"]["value_range"] == "flag"
        and other_range["preprocessing"]["settings"]["value_range"] == "0,1"
    )
    assert (
        any("calibration data" in w for w in other_range["warnings"])
        or other_range["outputs"][0]["sqnr_db"] != plain["outputs"][0]["sqnr_db"]
    )


def test_validate_refuses_several_targets_instead_of_keeping_the_last(cnn_int8, digits_calib, cli):
    code, _, err = cli(
        "validate",
        cnn_int8.output,
        "--reference",
        cnn_int8.output,
        "--data",
        digits_calib,
        "--target",
        "edgetpu",
        "--target",
        "xnnpack",
    )
    assert code == 2 and "one --target per run" in err


def test_per_channel_lists_of_the_wrong_length_are_refused(cnn_keras, digits_calib, tmp_path):
    with pytest.raises(UsageError, match="--std has 2 values but the model's input has 1 channel"):
        convert(
            cnn_keras, tmp_path / "m.tflite", digits_calib, samples=4, preprocessing=Preprocessing(mean=(0.0,), std=(2.0, 3.0))
        )


def test_ignored_data_and_raw_pixel_arrays_are_warned(cnn_keras, digits_calib, tmp_path):
    dynamic = convert(cnn_keras, tmp_path / "d.tflite", digits_calib, mode="dynamic")
    assert any("--data ignored" in w for w in dynamic.warnings)
    raw = tmp_path / "raw.npy"
    np.save(raw, np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype(np.float32))
    result = convert(cnn_keras, tmp_path / "r.tflite", raw, samples=16)
    assert any("no --range/--mean/--std was given" in w for w in result.warnings)
    declared = convert(cnn_keras, tmp_path / "s.tflite", raw, samples=16, preprocessing=Preprocessing(value_range="0,255"))
    assert not any("no --range" in w for w in declared.warnings)


def test_keep_float_suggests_unique_names_and_counts_what_it_kept(cnn_keras, digits_calib, tmp_path):
    with pytest.raises(UsageError) as info:
        convert(cnn_keras, tmp_path / "m.tflite", digits_calib, samples=8, keep_float=("nonexistent",))
    suggested = str(info.value).split("some layer names: ")[1].split(", ")
    assert suggested and not {"Relu", "BiasAdd", "Conv2D"} & set(suggested)
    result = convert(
        cnn_keras,
        tmp_path / "k.tflite",
        digits_calib,
        samples=8,
        mode="int8-fallback",
        keep_float=(suggested[0], "FULLY_CONNECTED"),
    )
    per_name = result.manifest.keep_float.per_name
    assert per_name[suggested[0]] == 1 and per_name["FULLY_CONNECTED"] >= 1


def test_verbosity_flags_after_the_command_and_quiet_silences(cnn_int8, cli):
    code, out, err = cli("inspect", cnn_int8.output, "-q")
    assert code == 0 and out == ""
    code, out, _ = cli("inspect", cnn_int8.output, "--json", "-q")
    assert code == 0 and json.loads(out)["ops_total"] > 0
    code, out, _ = cli("inspect", cnn_int8.output, "-v")
    assert code == 0 and "ops on int8 kernels" in out


def test_help_shows_defaults_and_plain_flags():
    from typer.testing import CliRunner

    from edgeq.cli import app

    result = CliRunner().invoke(app, ["convert", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    code, out = result.exit_code, result.stdout
    assert code == 0 and "<bool>" not in out and "{model}" not in out.lower()
    for default in ("CPU cores", "int8 (int16 for int16x8)", "default: (200)", "default: stretch"):
        assert default in out, default


def _on_a_terminal(args, env_extra):
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"COLUMNS": "120"} | env_extra
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeq.cli", *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_and_none_in_ci(cnn_keras, digits_calib, tmp_path):
    args = [
        "convert",
        cnn_keras,
        "--data",
        digits_calib,
        "--samples",
        "64",
        "--output",
        tmp_path / "m.tflite",
        "--force",
        "--no-cache",
    ]
    code, screen = _on_a_terminal(args, {})
    assert code == 0 and "calibrating" in screen and "samples/s" in screen and "64/64" in screen
    code, screen = _on_a_terminal(args, {"CI": "true"})
    assert code == 0 and "calibrating" not in screen and "wrote" in screen
