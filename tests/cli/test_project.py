"""The project file: edgeq.toml or pyproject.toml's [tool.edgeq] holds defaults and gates; flags override."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import FIXTURES
from typer.testing import CliRunner

from edgeq.cli import app

TINY = FIXTURES / "tflite"


@pytest.fixture
def project(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _validate(*extra: str, before: tuple[str, ...] = ()):
    """`edgeq [before] validate ... --json [extra]`: the results printed on stdout."""
    args = ["validate", str(TINY / "tiny_int8.tflite"), "-r", str(TINY / "tiny_float.tflite"), "-d", "x.npy", "--json"]
    result = CliRunner().invoke(app, [*before, *args, *extra, "--runs", "2", "--warmup", "0"])
    return result, json.loads(result.stdout) if result.exit_code in (0, 1) else None


def _limits(results) -> dict[str, float]:
    return {g["name"]: g["limit"] for g in results["gates"]}


def test_gates_from_edgeq_toml_and_flags_override_them(project):
    (project / "edgeq.toml").write_text('[validate]\nmin-agreement = "90%"\nmax-drop = "1pt"\nmin-sqnr = 10\n')
    result, results = _validate()
    assert result.exit_code in (0, 1), result.output
    assert _limits(results) == {"min_agreement": 0.9, "max_drop": 1.0, "min_sqnr": 10.0}
    assert "edgeq.toml: --max-drop, --min-agreement, --min-sqnr" in result.stderr
    result, results = _validate("--min-sqnr", "5")
    assert _limits(results)["min_sqnr"] == 5.0 and "--min-sqnr" not in result.stderr.split("edgeq.toml:")[1]
    result, results = _validate(before=("--no-project",))
    assert results["gates"] == [] and "edgeq.toml" not in result.stderr


def test_pyproject_tool_edgeq_is_found_from_a_subfolder(project, monkeypatch):
    (project / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.edgeq.validate]\nmin-sqnr = 12.5\n')
    (project / "sub").mkdir()
    np.save(project / "sub" / "x.npy", np.load(project / "x.npy"))
    monkeypatch.chdir(project / "sub")
    result, results = _validate()
    assert _limits(results) == {"min_sqnr": 12.5}, result.output


@pytest.mark.parametrize(
    "text, said",
    [
        ("[validate]\nmin-agreemnt = 1\n", "has no setting 'min-agreemnt'"),
        ("[valdate]\nmin-sqnr = 1\n", "[valdate] is not a command's table"),
        ('[validate]\ntarget = ["tpu"]\n', "'tpu' is not one of"),
        ("[validate\n", "not a readable TOML file"),
        ('[validate]\njson = "r.json"\n', "--json and --force stay on the command line"),
    ],
)
def test_a_bad_project_file_is_exit_2_in_one_line(project, text, said):
    (project / "edgeq.toml").write_text(text)
    result, _ = _validate()
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert said in result.output and "edgeq.toml" in result.output
