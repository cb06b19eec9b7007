"""The shipped device profiles are package data: a built wheel carries them and an installed
wheel lists them with no ./devices folder around."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow


def test_wheel_ships_the_profiles_and_an_installed_wheel_lists_them(tmp_path):
    shipped = sorted(p.name for p in (ROOT / "edgeq" / "run" / "profiles").glob("*.toml"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgeq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(Path(n).name for n in names if n.startswith("edgeq/run/profiles/") and n.endswith(".toml")) == shipped

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "EDGEQ_DEVICES": ""}
    where = subprocess.run(
        [sys.executable, "-c", "import edgeq; print(edgeq.__file__)"], cwd=away, env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(target)), where.stdout  # the wheel's edgeq, not the checkout's
    listed = subprocess.run([sys.executable, "-m", "edgeq.cli", "devices"], cwd=away, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for name in shipped:
        assert f"{target}/edgeq/run/profiles/{name}" in listed.stdout
