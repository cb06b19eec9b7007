"""ARM64 without a board: the real aarch64 LiteRT under QEMU user mode, on the Raspberry Pi 4
(Cortex-A72) and Pi 5 (Cortex-A76) CPU models, against the local x86 run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy
import pytest
from helpers import validate
from prerequisites import require

from edgeq.report.documents import markdown
from edgeq.run.devices.emulation import ready, setup

PROFILES = ("emulated-raspberry-pi-4", "emulated-raspberry-pi-5")


@pytest.fixture(scope="module")
def emulation():
    """Build the emulation cache once (downloads; .ci/run installs debootstrap); reused after."""
    if not ready():
        require(
            os.geteuid() == 0 and shutil.which("debootstrap") is not None,
            "building the ARM64 emulation needs root and debootstrap (.ci/run installs it; or run `make emulation` once as root)",
        )
        setup(print)
    return True


def test_check_reports_the_emulated_cpu_features(emulation, cli):
    found = {}
    for name in PROFILES:
        code, out, err = cli("devices", "check", name, "--json")
        assert code == 0, err
        found[name] = json.loads(out)
    assert all(info["machine"] == "aarch64" and info["emulated"] for info in found.values())
    assert found["emulated-raspberry-pi-5"]["asimddp"] is True  # Cortex-A76: ARM dot-product
    assert found["emulated-raspberry-pi-4"]["asimddp"] is False  # Cortex-A72: none
    assert all(info["runtime"] == "ai_edge_litert 2.3.0" for info in found.values())


def test_int8_logits_on_both_arm_cpus_equal_the_x86_run(emulation, cnn_int8, cnn_keras, digits_calib):
    """cnn_int8's output is the logits (no softmax), so saturation cannot hide a difference."""
    result = validate(cnn_int8.output, cnn_keras, digits_calib.parent / "val", limit=40, runs=3, warmup=1, devices=PROFILES)
    assert [d.name for d in result.devices] == list(PROFILES)
    for device in result.devices:
        exact = device.vs_local
        assert exact.outputs[0].elements == 40 * 10
        assert exact.bit_exact is True and exact.mismatches == 0 and exact.max_lsb_diff == 0
        assert device.emulated is True and device.machine == "aarch64" and not device.capabilities.latency
    md = markdown(result)
    rows = [line for line in md.splitlines() if line.startswith("| emulated-raspberry-pi")]
    assert len(rows) == 2 and all("emulated; not a latency figure" in r and " ms |" not in r for r in rows)


def test_missing_emulation_is_one_line_exit_2(cnn_int8, cnn_keras, digits_calib, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "empty"))
    code, _, err = cli(
        "validate",
        str(cnn_int8.output),
        "-r",
        str(cnn_keras),
        "-d",
        str(digits_calib),
        "--limit",
        "2",
        "--device",
        "emulated-raspberry-pi-5",
    )
    assert code == 2 and "run: edgeq devices setup emulated-raspberry-pi-5" in err and len(err.strip().splitlines()) == 1


def test_wrong_wheel_architecture_is_one_line_exit_2(cnn_int8, cnn_keras, digits_calib, tmp_path, monkeypatch, cli):
    cache = tmp_path / "edgeq" / "arm64-emulation"
    target = cache / "site" / "numpy" / "_core"
    target.mkdir(parents=True)
    x86 = sorted((Path(numpy.__file__).parent / "_core").glob("_multiarray_umath*.so"))[0]
    shutil.copy(x86, target / x86.name)  # an x86-64 numpy where the aarch64 one belongs
    (cache / "complete.json").write_text("{}")
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "edgeq"))
    code, _, err = cli("devices", "check", "emulated-raspberry-pi-4")
    assert code == 2 and "is not an aarch64 library" in err and len(err.strip().splitlines()) == 1
