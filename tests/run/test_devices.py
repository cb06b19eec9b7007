"""Devices: a real OpenSSH server on 127.0.0.1 stands in for a Raspberry Pi; the device Python
cannot import TensorFlow; benchmark_model's output parser runs on recorded output."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FIXTURES, validate
from prerequisites import require

from edgeq.run.devices.benchmark_model import parse_benchmark_model
from edgeq.run.devices.profiles import Profile, load_profile

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
RECORDED = FIXTURES / "benchmark_model"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.with_suffix(".pub")).read_text().strip()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """sshd on 127.0.0.1 with throwaway host and client keys; key authentication only."""
    require(
        Path(SSHD).exists() and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None,
        "needs OpenSSH's sshd, ssh and ssh-keygen: apt-get install openssh-server openssh-client (.ci/run does)",
    )
    root = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(root / "host_key")
    (root / "authorized_keys").write_text(_keygen(root / "client_key") + "\n")
    _keygen(root / "stranger_key")
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\n"
        f"UsePAM no\nPidFile {root / 'sshd.pid'}\nPermitRootLogin prohibit-password\n"
    )
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            require(False, f"sshd did not start here: {proc.stderr.read().decode()[-300:]}")
        time.sleep(0.05)
    yield {"root": root, "port": port}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    """A Python for the 'device': this interpreter without site-packages, seeing only numpy and
    ai_edge_litert (symlinked), so TensorFlow cannot be imported."""
    import ai_edge_litert
    import numpy

    site = Path(numpy.__file__).parent.parent
    root = tmp_path_factory.mktemp("device_python")
    lib = root / "lib"
    lib.mkdir()
    for entry in site.iterdir():
        if entry.name.split("-")[0].split(".")[0] in ("numpy", "ai_edge_litert", "ai_edge_litert_sdk_intel"):
            (lib / entry.name).symlink_to(entry)
    assert Path(ai_edge_litert.__file__).parent.parent == site
    python = root / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={lib} exec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    return python


def _profile(tmp_path: Path, sshd, device_python, **overrides) -> Path:
    values = {
        "name": "test-pi",
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": sshd["port"],
        "user": getpass.getuser(),
        "identity_file": str(sshd["root"] / "client_key"),
        "known_hosts": str(sshd["root"] / "known_hosts"),
        "python": str(device_python),
        "runtime": "ai_edge_litert",
        "workdir": str(tmp_path / "remote"),
        "timeout": 5,
    }
    values.update(overrides)
    (tmp_path / "remote").mkdir(exist_ok=True)
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / f"{values['name']}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_device_python_has_no_tensorflow(device_python):
    missing = subprocess.run([str(device_python), "-c", "import tensorflow"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'tensorflow'" in missing.stderr
    subprocess.run([str(device_python), "-c", "import numpy, ai_edge_litert.interpreter"], check=True)


def test_devices_check_over_ssh(sshd, device_python, tmp_path, cli):
    code, out, err = cli("devices", "check", str(_profile(tmp_path, sshd, device_python)), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["runtime"].startswith("ai_edge_litert ") and info["machine"] == os.uname().machine
    assert info["asimddp"] is False and info["delegates"]["xnnpack"] is True
    assert list((tmp_path / "remote").iterdir()) == []  # the remote workdir is cleaned


def test_validate_over_ssh_is_bit_exact_with_the_local_run(trained, digits_calib, sshd, device_python, tmp_path):
    _, int8, float_path = trained
    profile = _profile(tmp_path, sshd, device_python)
    result = validate(int8, float_path, digits_calib.parent / "val", limit=60, runs=15, warmup=2, devices=(str(profile),))
    device = result.devices[0]
    assert device.name == "test-pi" and device.transport == "ssh"
    assert device.vs_local.bit_exact is True and device.vs_local.mismatches == 0
    assert device.vs_local.outputs[0].elements == 60 * 10
    assert device.accuracy.int8_top1 == result.accuracy.int8_top1
    assert device.latency.runs == 15 and len(device.latency.int8_ms.samples) == 15
    assert device.latency.int8_ms.p50 > 0 and device.runtime.startswith("ai_edge_litert")
    assert device.latency.speedup == pytest.approx(device.latency.float_ms.p50 / device.latency.int8_ms.p50, rel=1e-3)
    assert list((tmp_path / "remote").iterdir()) == []


def test_two_devices_run_concurrently_with_one_result_each(cnn_int8, cnn_keras, digits_calib, sshd, device_python, tmp_path):
    profile = _profile(tmp_path, sshd, device_python)
    result = validate(cnn_int8.output, cnn_keras, digits_calib, limit=10, runs=3, warmup=1, devices=(str(profile), "local"))
    assert [d.name for d in result.devices] == ["test-pi", "local"]
    assert all(d.vs_local.bit_exact for d in result.devices)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"identity_file": "stranger_key"}, "the key was rejected"),
        ({"port": "closed"}, "Connection refused"),
        ({"known_hosts": "empty"}, "Host key verification failed"),
    ],
)
def test_connection_failures_are_one_line_exit_2(
    cnn_int8, cnn_keras, digits_calib, sshd, device_python, tmp_path, cli, change, message
):
    key, value = next(iter(change.items()))
    if value == "stranger_key":
        value = str(sshd["root"] / "stranger_key")
    elif value == "closed":
        value = _free_port()
    elif value == "empty":
        (tmp_path / "empty_known_hosts").write_text("")
        value = str(tmp_path / "empty_known_hosts")
    profile = _profile(tmp_path, sshd, device_python, **{key: value})
    start = time.monotonic()
    code, _, err = cli("devices", "check", str(profile))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - start < 5  # within the profile's timeout
    code, _, err = cli(
        "validate", str(cnn_int8.output), "-r", str(cnn_keras), "-d", str(digits_calib), "--limit", "4", "--device", str(profile)
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1  # the same through validate


def test_unreachable_host_gives_up_within_the_timeout(tmp_path, cli):
    profile = tmp_path / "far.toml"
    profile.write_text('transport = "ssh"\nhost = "10.255.255.1"\nuser = "pi"\ntimeout = 2\n')
    start = time.monotonic()
    code, _, err = cli("devices", "check", str(profile))
    assert code == 2 and "cannot connect to pi@10.255.255.1:22" in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - start < 2 + 3


def test_missing_runtime_on_the_device_is_one_line(cnn_int8, cnn_keras, digits_calib, sshd, device_python, tmp_path, cli):
    profile = _profile(tmp_path, sshd, device_python, runtime="tflite_runtime")
    code, _, err = cli(
        "validate", str(cnn_int8.output), "-r", str(cnn_keras), "-d", str(digits_calib), "--limit", "4", "--device", str(profile)
    )
    assert code == 2 and "no TFLite runtime on this device (tflite_runtime)" in err and len(err.strip().splitlines()) == 1


def test_names_with_shell_metacharacters_are_quoted(cnn_int8, cnn_keras, digits_calib, sshd, device_python, tmp_path):
    evil = tmp_path / "remote" / "a b; touch PWNED $(touch PWNED2)"
    evil.mkdir(parents=True)
    profile = _profile(tmp_path, sshd, device_python, workdir=str(evil))
    result = validate(cnn_int8.output, cnn_keras, digits_calib, limit=4, runs=2, warmup=0, devices=(str(profile),))
    assert result.devices[0].vs_local.bit_exact
    assert not list(Path("/").glob("PWNED*")) and not list(Path.home().glob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))


def test_a_profile_never_holds_a_password(tmp_path, cli):
    profile = tmp_path / "bad.toml"
    profile.write_text('transport = "ssh"\nhost = "pi.local"\npassword = "hunter2"\n')
    code, out, err = cli("devices", "check", str(profile))
    assert code == 2 and "never holds a password" in err and "hunter2" not in out + err


def test_shipped_profiles_load_and_list(cli):
    names = {"local", "raspberry-pi-4", "raspberry-pi-5", "pixel-8", "coral-usb"}
    code, out, _ = cli("devices", "--json")
    listed = {p["name"]: p for p in json.loads(out)}
    assert code == 0 and names <= set(listed)
    assert listed["pixel-8"]["transport"] == "adb" and listed["raspberry-pi-5"]["transport"] == "ssh"
    assert listed["coral-usb"]["delegates"] == ["libedgetpu.so.1"] and listed["coral-usb"]["runtime"] == "tflite_runtime"
    assert isinstance(load_profile("raspberry-pi-4"), Profile)


@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("yocto_mobilenet_v1.txt", {"runs": 50, "mean": 2950.34, "std": 109.798, "min": 2727.568, "max": 3189.954, "p50": None}),
        ("android_yolov5s_nnapi.txt", {"runs": 50, "mean": 156.669, "std": 2.352, "min": 149.738, "max": 161.935, "p50": None}),
        ("android_logcat_percentiles.txt", {"runs": 25, "mean": 145.528, "p50": 141.253, "p5": 140.545, "p95": 187.533}),
    ],
)
def test_benchmark_model_parser_on_recorded_output(fixture, expected):
    """Recorded output of the real benchmark_model; sources in fixtures/benchmark_model/README.md."""
    parsed = parse_benchmark_model((RECORDED / fixture).read_text())
    assert {k: getattr(parsed, k) for k in expected} == expected


def test_optimize_latency_times_the_candidates_on_the_device(trained, digits_calib, sshd, device_python, tmp_path, cli):
    keras_path, _, _ = trained
    profile = _profile(tmp_path, sshd, device_python)
    code, text, err = cli(
        "convert",
        str(keras_path),
        "--data",
        str(digits_calib),
        "--samples",
        "16",
        "--output",
        str(tmp_path / "m.tflite"),
        "--optimize",
        "latency",
        "--device",
        str(profile),
    )
    assert code == 0, err
    record = json.loads((tmp_path / "m.edgeq.json").read_text())["latency"]
    assert record["delegate"] == f"xnnpack on test-pi ({getpass.getuser()}@127.0.0.1:{sshd['port']})"
    assert record["note"] is None and all(c["int8_p50_ms"] > 0 for c in record["candidates"])
    assert "on test-pi" in text


# -- accuracy on an Android phone with only benchmark_model (a transport that enforces its contract) --


@pytest.mark.tf
def test_validate_on_a_phone_scores_benchmark_models_own_outputs(trained, digits_calib, tmp_path, monkeypatch):
    """validate --device with an adb profile: the samples' raw input files, one invocation each from
    one script, the outputs concatenated in one file, scored and gated like any device. No phone was
    used: ContractAdb (tests/helpers.py) answers as benchmark_model does, computing with LiteRT here."""
    from helpers import ContractAdb

    from edgeq.run.devices import transports

    _, int8, float_path = trained
    phone = ContractAdb()
    monkeypatch.setattr(transports, "transport", lambda profile: phone)
    profile = tmp_path / "phone.toml"
    profile.write_text(
        'name = "phone"\ntransport = "adb"\nbenchmark_binary = "/data/local/tmp/benchmark_model"\n'
        'workdir = "/data/local/tmp"\ndevice_samples = 12\n'
    )
    result = validate(
        int8,
        float_path,
        digits_calib.parent / "val",
        limit=40,
        runs=5,
        warmup=1,
        devices=(str(profile),),
        gates={"min_agreement": 0.5, "max_latency_ms": 1e6},
    )
    device = result.devices[0]
    assert device.capabilities.scores_outputs and device.accuracy.samples == 12 and device.outputs[0].sqnr_db > 20
    assert device.vs_local.bit_exact and device.vs_local.outputs[0].elements == 12 * 10  # LiteRT here computed them
    assert [g.status for g in device.gates] == ["passed", "passed"]
    samples = [c for c in phone.invocations if any(a.startswith("--output_filepath=") for a in c)]
    assert len(samples) == 12 + 1  # the INT8 model's 12 samples and the float model's first (its timing reference)
    first = samples[0]
    workdir = first[1].split("=", 1)[1].rsplit("/", 1)[0]
    assert first == [
        "/data/local/tmp/benchmark_model",
        f"--graph={workdir}/model.tflite",
        "--num_threads=1",
        "--use_xnnpack=true",
        "--input_layer=serving_default_image:0",
        "--input_layer_shape=1,8,8,1",
        f"--input_layer_value_files=serving_default_image::0:{workdir}/inputs/0_0.bin",
        f"--output_filepath={workdir}/out_0.bin",
        "--num_runs=1",
        "--warmup_runs=0",
    ]
    assert sum(1 for c in phone.commands if c[0] == "sh") == 2  # one shell call per model for all its samples


def test_an_input_of_the_wrong_size_is_benchmark_models_own_error_in_one_line(tmp_path):
    import numpy as np
    from helpers import ContractAdb

    from edgeq.run.devices.benchmark_model import BenchmarkModelRunner
    from edgeq.run.devices.transports import DeviceError

    model = FIXTURES / "tflite" / "tiny_int8.tflite"
    profile = Profile("phone", transport="adb", benchmark_binary="/bm", device_samples=2)
    wrong = np.zeros((2, 1, 8, 8, 2), np.int8)  # two samples of two channels where the model takes one
    with pytest.raises(
        DeviceError,
        match=r"^phone: benchmark_model refused the samples: The size of \S+ is 128 bytes\. "
        r"It should be 64 bytes\.$",
    ):
        BenchmarkModelRunner(profile, ContractAdb()).measure(model, [wrong], 0, 1)
