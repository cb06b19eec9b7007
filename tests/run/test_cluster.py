"""validate --cluster and convert --cluster on a real two-node Ray cluster on 127.0.0.1 (`ray start
--head` and a second node joined to it, each from its own working directory and TMPDIR): every
figure and every written byte equals the local run's, and the tasks ran on both nodes.

Ray never registers a node at a loopback address while the machine has another interface (it
replaces 127.0.0.1 by the address it would use towards other hosts), so the cluster and edgeq run in
a network namespace of the test's own that has only the loopback interface: every packet stays
on 127.0.0.1. Making the namespace needs root (CI has it)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from prerequisites import require

from tests import search_models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "tflite" / "tiny_int8.tflite"
FLOAT = FIXTURES / "tflite" / "tiny_float.tflite"
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NETNS = f"edgeq-ray-{os.getpid()}"


@pytest.fixture(scope="module")
def cluster():
    require(
        importlib.util.find_spec("ray") is not None and RAY.exists(),
        "needs Ray: pip install 'edgeq[ray]' (make test installs it)",
    )
    require(
        os.geteuid() == 0 and shutil.which("ip") is not None,
        "a loopback-only network namespace for the Ray cluster needs root and iproute2 (CI runs as root)",
    )
    folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's Unix sockets live under TMPDIR: keep the path short
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    inside = ["ip", "netns", "exec", NETNS]
    nodes = [
        ("head", ["--head", "--port", str(port), "--include-dashboard=false"]),
        ("second", ["--address", f"127.0.0.1:{port}"]),
    ]
    subprocess.run(["ip", "netns", "add", NETNS], check=True, timeout=30)
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
        for name, args in nodes:
            (folder / name / "tmp").mkdir(parents=True)
            subprocess.run(
                [*inside, str(RAY), "start", *args, "--num-cpus", "1", "--disable-usage-stats"],
                cwd=folder / name,
                env={**env, "TMPDIR": str(folder / name / "tmp")},
                check=True,
                capture_output=True,
                timeout=120,
            )
        for _ in range(60):  # the second node registers with the head a moment after `ray start` returns
            status = subprocess.run(
                [*inside, str(RAY), "status", "--address", f"127.0.0.1:{port}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if "0.0/2.0 CPU" in status.stdout:
                break
            time.sleep(1)
        yield f"127.0.0.1:{port}", env, inside
    finally:
        subprocess.run([*inside, str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        subprocess.run(["ip", "netns", "delete", NETNS], timeout=30, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _edgeq(*args: str, env: dict, inside: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*inside, sys.executable, "-c", "from edgeq.cli import run; run()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _validate(data: Path, out: Path, env: dict, *extra: str, inside: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *inside,
            sys.executable,
            "-c",
            "from edgeq.cli import run; run()",
            "validate",
            str(INT8),
            "--reference",
            str(FLOAT),
            "--data",
            str(data),
            "--runs",
            "3",
            "--json",
            str(out),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_cluster_run_gives_the_local_figures_and_uses_both_nodes(cluster, tmp_path):
    address, env, inside = cluster
    data = tmp_path / "x.npz"
    rng = np.random.default_rng(3)
    np.savez(data, x=rng.random((300, 8, 8, 1), dtype=np.float32), y=rng.integers(0, 3, 300))
    local = _validate(data, tmp_path / "local.json", env)
    spread = _validate(data, tmp_path / "cluster.json", env, "--cluster", address, inside=inside)
    assert local.returncode == 0 and spread.returncode == 0, spread.stderr
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "cluster"))
    for key in ("accuracy", "outputs", "worst_sqnr_db", "worst_slice_sqnr_db", "data", "size"):
        assert a[key] == b[key], key
    found = re.search(r"Ray cluster: (\d+) shard\(s\) of up to \d+ samples on (\d+) node\(s\)", spread.stderr)
    assert found and int(found.group(1)) == 10 and int(found.group(2)) == 2, spread.stderr


def test_an_unreachable_cluster_is_one_line(tmp_path):
    require(importlib.util.find_spec("ray") is not None, "needs Ray (make test installs it)")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 8, 8, 1), np.float32))
    proc = _validate(
        data, tmp_path / "r.json", {**os.environ, "RAY_AUTH_MODE": "token"}, "--cluster", f"127.0.0.1:{_free_port()}"
    )
    assert proc.returncode == 2 and "--cluster" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.tf
def test_a_conversion_on_the_cluster_writes_the_local_bytes(cluster, tmp_path):
    """The DSP model's search ranks 17 units of layers, each alone in float, after --calibration
    auto tried its methods: those candidates are built and judged as tasks on both nodes, and the
    written model is the local run's to the byte."""
    address, env, inside = cluster
    model = search_models.dsp_audio_model(tmp_path / "audio.keras")
    calibration = search_models.save_npz(tmp_path / "cal.npz", search_models.audio(64, 1))
    held_out = search_models.save_npz(tmp_path / "eval.npz", search_models.audio(24, 2))
    args = [
        str(model),
        "-d",
        str(calibration),
        "--mode",
        "int8-fallback",
        "--io",
        "float32",
        "--eval-data",
        str(held_out),
        "--min-sqnr",
        "25",
        "--calibration",
        "auto",
        "--no-cache",
    ]
    local = _edgeq("convert", *args, "-o", str(tmp_path / "local.tflite"), env=env)
    spread = _edgeq("-v", "convert", *args, "-o", str(tmp_path / "cluster.tflite"), "--cluster", address, env=env, inside=inside)
    assert local.returncode == 0 and spread.returncode == 0, spread.stderr
    assert (tmp_path / "local.tflite").read_bytes() == (tmp_path / "cluster.tflite").read_bytes()
    manifests = [json.loads((tmp_path / f"{n}.edgeq.json").read_text()) for n in ("local", "cluster")]
    steps = [[{k: v for k, v in s.items() if k != "seconds"} for s in m["search"]["steps"]] for m in manifests]
    assert steps[0] == steps[1] and len(steps[0]) > 10
    ran = dict(re.findall(r"Ray cluster: \d+ task\(s\) \(([^)]+)\) on (\d+) node", spread.stderr))
    assert ran.get("effect of one unit alone") == "2" and "calibration method" in ran, spread.stderr


def test_cluster_with_nothing_to_spread_is_bad_usage(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 8, 8, 1), np.float32))
    proc = _edgeq(
        "convert", str(FLOAT), "-d", str(data), "-o", str(tmp_path / "o.tflite"), "--cluster", "local", env=dict(os.environ)
    )
    assert proc.returncode == 2 and "--cluster" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
