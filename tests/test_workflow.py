"""The CI workflow example: actionlint passes on it, and its own convert/validate/bundle steps,
run here by bash on the demo model, work, and a failing gate fails the validate step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from tests.prerequisites import require

WORKFLOW = ROOT / "examples" / "github-actions" / "model-ci.yml"
BIN = Path(sys.executable).parent


def _actionlint(path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("actionlint", path=str(BIN)) or shutil.which("actionlint")
    require(binary is not None, "actionlint is not installed (pip install -e '.[dev]')")
    require(shutil.which("shellcheck", path=f"{BIN}:{os.environ.get('PATH', '')}") is not None, "shellcheck is not installed")
    return subprocess.run(
        [binary, str(path)], capture_output=True, text=True, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    )


def test_actionlint_passes_on_the_workflow(tmp_path):
    assert _actionlint(WORKFLOW).returncode == 0, _actionlint(WORKFLOW).stdout
    broken = tmp_path / "broken.yml"  # the check is real: an unquoted variable in a step is found
    broken.write_text(WORKFLOW.read_text().replace('edgeq convert "$MODEL"', "edgeq convert $MODEL"))
    run = _actionlint(broken)
    assert run.returncode != 0 and "SC2086" in run.stdout


def _steps() -> dict[str, str]:
    import yaml

    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return {step["id"]: step["run"] for step in job["steps"] if "id" in step}


def _run(step: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", _steps()[step]], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_workflow_steps_run_on_the_demo_model_and_a_failing_gate_fails(trained, digits_calib, tmp_path):
    import yaml

    keras_path, _, _ = trained
    (tmp_path / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    env = {
        **os.environ,
        **{k: str(v) for k, v in yaml.safe_load(WORKFLOW.read_text())["env"].items()},
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MODEL": str(keras_path),
        "CALIBRATION": str(digits_calib),
        "HELD_OUT": str(digits_calib.parent / "val"),
        "LABELS": str(tmp_path / "labels.txt"),
    }
    assert set(_steps()) == {"convert", "validate", "bundle"}
    for step in ("convert", "validate", "bundle"):
        run = _run(step, tmp_path, env)
        assert run.returncode == 0, (step, run.stderr[-2000:])
    out = tmp_path / env["OUT"]
    assert (out / "report" / "report.md").read_text().startswith("## edgeq validation: ✅ PASSED")
    assert sorted(p.name for p in (out / "bundle").iterdir()) == [
        "SHA256SUMS",
        "labels.txt",
        "model.edgeq.json",
        "model.tflite",
        "ops.txt",
        "report.md",
    ]
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out / "bundle", capture_output=True).returncode == 0

    # the next pull request, against a release that scored 2 points more: the gate fails the step
    release = json.loads((out / "results.json").read_text())
    release["accuracy"]["int8_top1"] += 0.02
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "results.json").write_text(json.dumps(release))
    run = _run("validate", tmp_path, env)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "FAIL max_regression_pts" in run.stdout
    assert "Against the baseline" in (out / "report" / "report.md").read_text()  # what the PR comment shows
