"""kill -9 of convert or validate at three points (the run started, its converting child started,
the child 3 s into its work): within 5 s nothing of edgeq's is left in $TMPDIR and no process of
the run is alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EDGEQ = [sys.executable, "-c", "from edgeq.cli import run; run()"]
POINTS = ("started", "child", "child+3s")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _spawned_child(pid: int) -> bool:
    """A multiprocessing child of the run (not its forked watchdog, which shares its command line)."""
    for child in _descendants(pid):
        try:
            if b"multiprocessing" in Path(f"/proc/{child}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_at(point: str, argv: list, tmp: Path) -> tuple[list[str], list[int]]:
    env = {**os.environ, "TMPDIR": str(tmp), "EDGEQ_CACHE_DIR": str(tmp.parent / "cache")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    seen_child = None
    while time.monotonic() < deadline and process.poll() is None:
        if point == "started" and any(tmp.glob("edgeq-run-*")):
            break
        if point != "started" and _spawned_child(process.pid):
            seen_child = seen_child or time.monotonic()
            if point == "child" or time.monotonic() - seen_child >= 3:
                break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before the point {point}"
    family = _descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    end = time.monotonic() + 5
    while time.monotonic() < end and (any(tmp.iterdir()) or any(_alive(p) for p in family)):
        time.sleep(0.1)
    return sorted(p.name for p in tmp.iterdir()), [p for p in family if _alive(p)]


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_of_convert_leaves_nothing(point, cnn_keras, digits_calib, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = [*EDGEQ, "convert", str(cnn_keras), "--data", str(digits_calib), "-o", str(tmp_path / "out.tflite"), "--no-cache"]
    left, alive = _kill_at(point, argv, tmp)
    assert left == [] and alive == []
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_of_validate_leaves_nothing(point, cnn_int8, cnn_keras, digits_calib, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = [
        *EDGEQ,
        "validate",
        str(cnn_int8.output),
        "--reference",
        str(cnn_keras),
        "--data",
        str(digits_calib.parent / "val"),
        "--no-cache",
        "--json",
        str(tmp_path / "r.json"),
    ]
    left, alive = _kill_at(point, argv, tmp)
    assert left == [] and alive == []
    assert not (tmp_path / "r.json").exists()


def test_a_run_removes_the_scratch_of_runs_that_are_gone(tmp_path):
    from edgeq.host.scratch import PREFIX, remove_stale

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"{PREFIX}{dead.pid}-abc").mkdir()
    (tmp_path / f"{PREFIX}{os.getpid()}-def").mkdir()
    remove_stale(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{PREFIX}{os.getpid()}-def"]
