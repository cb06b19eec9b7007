"""The command line's own usage errors."""

from __future__ import annotations

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_a_missing_required_option_names_it_without_an_env_var(tmp_path):
    from typer.testing import CliRunner

    from edgeq.cli import app

    for args in (["validate", "m.tflite"], ["convert", "m.keras"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Missing option" in result.output and "env var" not in result.output
