"""The command line's own surface: usage errors, help panels and examples, completion, renamed flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeq.cli import app

COMMANDS = (
    ["convert"],
    ["validate"],
    ["inspect"],
    ["report"],
    ["bundle"],
    ["compile"],
    ["devices", "check"],
    ["devices", "setup"],
)


def test_a_missing_required_option_names_it_without_an_env_var(tmp_path):
    from typer.testing import CliRunner

    from edgeq.cli import app

    for args in (["validate", "m.tflite"], ["convert", "m.keras"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Missing option" in result.output and "env var" not in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_examples_in_its_help(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0 and "Examples:" in result.stdout and f"edgeq {' '.join(command)} " in result.stdout


def test_convert_and_validate_group_their_options_in_panels():
    for command, panels in (
        ("convert", ("Recipe", "Preprocessing", "Accuracy budget", "Model metadata")),
        ("validate", ("Gates", "Devices and accelerators", "Preprocessing")),
    ):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200).stdout
        assert all(f"─ {p}" in out for p in panels), out


def test_shell_completion_can_be_installed():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_the_models_version_is_model_version_and_the_old_flag_says_so(tmp_path):
    out = CliRunner().invoke(app, ["convert", "--help"], env={"COLUMNS": "200"}, terminal_width=200).stdout
    assert "--model-version" in out and " --version " not in out
    both = CliRunner().invoke(
        app, ["convert", "m.keras", "-o", str(tmp_path / "o.tflite"), "--version", "1", "--model-version", "2"]
    )
    assert both.exit_code == 2 and "--model-version" in both.output


def test_json_dash_prints_the_results_on_stdout_and_writes_no_file(tmp_path, monkeypatch):
    import json

    import numpy as np
    from helpers import FIXTURES

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32))
    tflite = FIXTURES / "tflite"
    args = ["validate", str(tflite / "tiny_int8.tflite"), "-r", str(tflite / "tiny_float.tflite"), "-d", "x.npy", "--runs", "2"]
    result = CliRunner().invoke(app, [*args, "--warmup", "0", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"]["samples"] == 4 and not (tmp_path / "-").exists()
    assert CliRunner().invoke(app, [*args, "--json", "-", "--no-wait"]).exit_code == 2


def test_an_agreement_is_a_fraction_or_a_percentage_and_a_bare_98_is_refused():
    from edgeq.cli.common import fraction, points

    assert fraction("98%") == fraction("0.98") == 0.98 and points("0.5pts") == points("0.5") == 0.5
    tflite = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
    result = CliRunner().invoke(
        app,
        [
            "validate",
            str(tflite / "tiny_int8.tflite"),
            "-r",
            str(tflite / "tiny_float.tflite"),
            "-d",
            "x.npy",
            "--min-agreement",
            "98",
        ],
    )
    assert result.exit_code == 2 and "give 0.98 or 98%" in result.output, result.output


@pytest.mark.tf
def test_convert_recipe_gives_the_same_bytes_and_refuses_flags_that_change_it(cnn_keras, digits_calib, tmp_path, cli):
    first = tmp_path / "first.tflite"
    code, _, err = cli(
        "convert",
        cnn_keras,
        "-d",
        digits_calib,
        "-o",
        first,
        "--samples",
        "48",
        "--seed",
        "2",
        "--calibration",
        "percentile:99.9",
        "--no-cache",
    )
    assert code == 0, err
    again = tmp_path / "again.tflite"
    code, _, err = cli("convert", cnn_keras, "--recipe", tmp_path / "first.edgeq.json", "-o", again, "--no-cache")
    assert code == 0, err
    assert again.read_bytes() == first.read_bytes()
    code, _, err = cli(
        "convert", cnn_keras, "--recipe", tmp_path / "first.edgeq.json", "-o", tmp_path / "x.tflite", "--mode", "int16x8"
    )
    assert code == 2 and "drop --mode" in err


def test_devices_says_what_it_knows_without_contacting_them():
    out = CliRunner().invoke(app, ["devices"], env={"COLUMNS": "200"}, terminal_width=200).stdout
    assert out.startswith("profiles (nothing was contacted; `edgeq devices check NAME` tries one):")
    lines = out.splitlines()
    status = {lines[i].split()[0]: lines[i + 1].split(";")[0].strip() for i in range(1, len(lines) - 1, 2)}
    assert status["local"] == "this machine" and status["raspberry-pi-5"] == "not checked"
    assert status["emulated-raspberry-pi-5"] in ("emulation set up", "not set up: edgeq devices setup emulated-raspberry-pi-5")


def test_one_json_convention_in_every_command_that_has_json(tmp_path, monkeypatch):
    """`--json [PATH]`: no PATH (or -) prints the JSON alone on stdout; a PATH writes it and keeps the
    summary; an existing PATH needs --force; the manifest beside an input is never written over."""
    import json
    import shutil

    from helpers import FIXTURES

    from edgeq.cli.common import json_args

    assert json_args(["inspect", "--json", "m.tflite"]) == ["inspect", "--json", "-", "m.tflite"]
    assert json_args(["inspect", "m.tflite", "--json"]) == ["inspect", "m.tflite", "--json", "-"]
    assert json_args(["x", "--json", "out.JSON", "--json", "-"]) == ["x", "--json", "out.JSON", "--json", "-"]
    assert json_args(["x", "--", "--json"]) == ["x", "--", "--json"]
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "tiny_int8.tflite"
    shutil.copy(FIXTURES / "tflite" / "tiny_int8.tflite", model)
    for args in (["inspect", "--json", str(model)], ["inspect", str(model), "--json"], ["devices", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)  # the JSON alone
    result = CliRunner().invoke(app, ["inspect", str(model), "--json", "described.json"])
    assert result.exit_code == 0 and "ops on int8 kernels" in result.stdout
    assert json.loads((tmp_path / "described.json").read_text())["bytes"] == model.stat().st_size
    again = CliRunner().invoke(app, ["inspect", str(model), "--json", "described.json"])
    assert again.exit_code == 2 and "--force" in again.output
    assert CliRunner().invoke(app, ["inspect", str(model), "--json", "described.json", "--force"]).exit_code == 0
    manifest = tmp_path / "tiny_int8.edgeq.json"
    manifest.write_text("{}")
    over = CliRunner().invoke(app, ["inspect", str(model), "--json", str(manifest), "--force"])
    assert over.exit_code == 2 and manifest.read_text() == "{}"
    result = CliRunner().invoke(app, ["devices", "--json", "profiles.json"])
    assert result.exit_code == 0 and "profiles (nothing was contacted" in result.stdout
    assert {p["name"] for p in json.loads((tmp_path / "profiles.json").read_text())} >= {"local"}
    for name in ("convert", "inspect", "compile", "validate", "devices"):
        help_text = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"}, terminal_width=200).stdout
        assert "--json" in help_text and "[PATH]" in help_text, name
    for name in ("report", "bundle"):
        help_text = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"}, terminal_width=200).stdout
        assert "--json" not in help_text.replace("validate --json", ""), name


def test_choices_are_listed_completed_and_refused_in_one_line():
    import click
    import typer

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    expected = {
        "convert": {"mode", "io", "target", "optimize", "refine", "color", "resize", "value_range", "layout", "metadata"},
        "validate": {"delegate", "target", "gpu_precision", "color", "resize", "value_range", "layout"},
        "inspect": {"target"},
    }
    for name, params in expected.items():
        command = commands[name]
        choices = {p.name for p in command.params if isinstance(p.type, click.Choice)}
        assert params <= choices, (name, params - choices)
        mode = next(p for p in command.params if p.name in ("mode", "target"))
        with click.Context(command) as ctx:
            completed = [c.value for c in mode.shell_complete(ctx, "int8-" if mode.name == "mode" else "edge")]
        assert completed == (["int8-fallback"] if mode.name == "mode" else ["edgetpu"])
    result = CliRunner().invoke(app, ["convert", "m.keras", "-o", "x.tflite", "--mode", "int4"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "'int4' is not one of 'int8', 'int8-fallback'" in result.output and "convert --help)" in result.output
    assert "--compare-to" not in CliRunner().invoke(app, ["validate", "--help"], terminal_width=200).stdout  # a dead option
