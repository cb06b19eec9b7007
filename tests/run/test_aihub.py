"""Validation on phones through Qualcomm AI Hub: the real `qai_hub` client against a stand-in on
127.0.0.1 that speaks its protobuf API (tests/aihub_server.py) and computes the outputs with
LiteRT. Three phones in one run: one on the NPU, one on the GPU, one whose job fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prerequisites import require

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "tflite" / "tiny_int8.tflite"
FLOAT = FIXTURES / "tflite" / "tiny_float.tflite"
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import importlib.util

    require(importlib.util.find_spec("qai_hub") is not None, "needs qai-hub: pip install 'edgeq[aihub]' (make test installs it)")
    from aihub_server import AiHubServer

    with AiHubServer() as server:
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(server.ini(tmp_path, TOKEN)))
        yield server


def _profiles(folder: Path) -> list[str]:
    (folder / "s24.toml").write_text('transport = "aihub"\ndevice = "Samsung Galaxy S24 (Family)"\ncompute_unit = "npu"\n')
    (folder / "pixel.toml").write_text('transport = "aihub"\ndevice = "Google Pixel 8"\ncompute_unit = "gpu"\n')
    (folder / "elite.toml").write_text('transport = "aihub"\ndevice = "Snapdragon X Elite CRD"\ncompute_unit = "cpu"\n')
    return [str(folder / f"{n}.toml") for n in ("s24", "pixel", "elite")]


def _data(folder: Path) -> Path:
    path = folder / "x.npy"
    np.save(path, np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32))
    return path


def test_a_fleet_of_three_phones_two_scored_one_failed(hub, tmp_path, cli):
    profiles = _profiles(tmp_path)
    argv = [
        "validate",
        INT8,
        "--reference",
        FLOAT,
        "--data",
        _data(tmp_path),
        "--runs",
        "3",
        "--warmup",
        "1",
        "--json",
        tmp_path / "r.json",
        "--report",
        tmp_path / "report",
        "--min-sqnr",
        "5",
    ]
    for p in profiles:
        argv += ["--device", p]
    code, out, err = cli(*argv)
    assert code == 0, err
    assert not hub.errors
    results = json.loads((tmp_path / "r.json").read_text())
    s24, pixel, elite = results["devices"]
    for phone, unit in ((s24, "npu"), (pixel, "gpu")):
        assert phone["accuracy"]["samples"] == 6 and phone["vs_local"]["bit_exact"]  # LiteRT computed them: equal
        assert phone["latency"]["int8_ms"]["p50"] > 0 and phone["latency"]["delegate"] == f"aihub:{unit}"
        assert phone["accelerator"]["asked"] == unit and phone["accelerator"]["ran_on"] == unit
        assert phone["accelerator"]["ops_on_cpu"] == 1  # the stand-in puts each model's last layer on the CPU
        assert "AI Hub job j" in phone["machine"] and "/jobs/j" in phone["machine"]  # the job id and its web URL
        assert phone["passed"] is True
    assert elite["error"] and "failed: Failed to load model on device" in elite["error"]
    assert elite["passed"] is not False
    failed_lines = [line for line in err.splitlines() if "Snapdragon X Elite" in line or "elite" in line]
    assert len(failed_lines) == 1, err
    assert "NOT MEASURED" in out
    report = (tmp_path / "report" / "report.md").read_text()  # the fleet as one table: where each phone ran the ops
    on = {
        unit: next(p["accelerator"]["ops_on_accelerator"] for p in (s24, pixel) if p["accelerator"]["asked"] == unit)
        for unit in ("npu", "gpu")
    }
    assert f"{on['npu']} on NPU, 1 on CPU" in report and f"{on['gpu']} on GPU, 1 on CPU" in report


def test_a_gate_that_fails_on_a_phone_fails_the_run(hub, tmp_path, cli):
    profiles = _profiles(tmp_path)
    code, _, err = cli(
        "validate",
        INT8,
        "--reference",
        FLOAT,
        "--data",
        _data(tmp_path),
        "--runs",
        "2",
        "--device",
        profiles[0],
        "--min-sqnr",
        "200",
    )
    assert code == 1, err


def test_the_token_is_in_no_file_edgeq_writes(hub, tmp_path, cli):
    code, _, err = cli(
        "validate",
        INT8,
        "--reference",
        FLOAT,
        "--data",
        _data(tmp_path),
        "--runs",
        "2",
        "--device",
        "aihub:Samsung Galaxy S24 (Family)",
        "--json",
        tmp_path / "r.json",
        "--report",
        tmp_path / "report",
    )
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "client.ini"]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_503_twice_then_success_is_retried(hub, tmp_path, cli):
    hub.fail_next(2)
    code, _, err = cli(
        "validate",
        INT8,
        "--reference",
        FLOAT,
        "--data",
        _data(tmp_path),
        "--runs",
        "2",
        "--device",
        "aihub:Samsung Galaxy S24 (Family)",
        "--json",
        tmp_path / "r.json",
    )
    assert code == 0, err
    assert hub.store.fail == 0 and hub.store.requests[:3] == ["GET /api/v1/devices/"] * 3  # two 503s, then served
    assert json.loads((tmp_path / "r.json").read_text())["devices"][0]["accuracy"]["samples"] == 6


def test_devices_aihub_lists_the_phones(hub, cli):
    code, out, err = cli("devices", "--aihub")
    assert code == 0, err
    assert "aihub:Samsung Galaxy S24 (Family)" in out and "qualcomm-snapdragon-8gen3" in out


def test_without_a_configured_client_it_says_what_to_do(tmp_path, monkeypatch, cli):
    import importlib.util

    require(importlib.util.find_spec("qai_hub") is not None, "needs qai-hub (make test installs it)")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "missing.ini"))
    code, _, err = cli("devices", "--aihub")
    assert code == 2 and "qai-hub configure" in err


def test_no_wait_then_resume_gives_the_results_of_a_waiting_run(hub, tmp_path, cli):
    profiles = _profiles(tmp_path)[:2]
    base = [
        "validate",
        INT8,
        "--reference",
        FLOAT,
        "--data",
        _data(tmp_path),
        "--runs",
        "3",
        "--min-sqnr",
        "5",
        "--device",
        profiles[0],
        "--device",
        profiles[1],
    ]
    code, _, err = cli(*base, "--json", tmp_path / "waited.json")
    assert code == 0, err
    code, _, err = cli(*base, "--json", tmp_path / "later.json", "--no-wait")
    assert code == 0 and "pending on" in err and "--resume" in err, err
    later = json.loads((tmp_path / "later.json").read_text())
    assert all(len(d["pending"]) == 2 and d["passed"] is None for d in later["devices"])
    code, _, err = cli("validate", "--resume", tmp_path / "later.json")
    assert code == 0, err
    waited, resumed = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("waited", "later"))

    def phones(results):  # everything but the job ids (in `machine`)
        return [{k: v for k, v in d.items() if k != "machine"} for d in results["devices"]]

    assert phones(resumed) == phones(waited)
    assert resumed["passed"] == waited["passed"] and resumed["gates"] == waited["gates"]
    assert not [w for w in resumed["warnings"] if w.startswith("pending on")]


def test_resume_without_pending_jobs_is_one_line(hub, tmp_path, cli):
    code, _, err = cli(
        "validate", INT8, "--reference", FLOAT, "--data", _data(tmp_path), "--runs", "2", "--json", tmp_path / "r.json"
    )
    assert code == 0, err
    code, _, err = cli("validate", "--resume", tmp_path / "r.json")
    assert code == 2 and "no pending jobs" in err and err.count("\n") == 1, err
