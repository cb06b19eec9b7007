"""Progress: a live display on a terminal, a line per phase in CI, nothing in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time

import pytest

from edgeq.cli.common import progress_bar, state
from edgeq.core.progress import report
from edgeq.core.timing import phase


def test_ci_gets_one_line_per_phase_of_a_second_or_more_and_a_pipe_nothing(capfd, monkeypatch):
    state.update(quiet=False, json=False)
    monkeypatch.setenv("CI", "true")
    with progress_bar():
        with phase("slow step"):
            time.sleep(1.05)
        with phase("quick step"):
            report("a loop", 1, 2)
    err = capfd.readouterr().err
    assert re.fullmatch(r"edgeq: slow step took 1\.\d s\n", err), err
    monkeypatch.delenv("CI")
    with progress_bar():
        with phase("slow step"):
            time.sleep(1.05)
    assert capfd.readouterr().err == ""  # not a terminal and not CI: a pipe, kept clean


@pytest.mark.tf
def test_a_terminal_sees_each_phase_live_and_the_search_its_best_so_far(tmp_path):
    """A real conversion with a search, in a pseudo-terminal: the phases and the search's count and
    best so far are drawn while they run, and the command ends (a display that fails must not hang it)."""
    from helpers import ROOT

    model, digits = tmp_path / "digits.keras", ROOT / "representative_data" / "digits"
    sys.path.insert(0, str(ROOT / "demo"))
    from train_digits import train

    train(model, epochs=2, side=8)
    command = [sys.executable, "-m", "edgeq.cli", "convert", str(model), "-d", str(digits / "calib"), "-o",
               str(tmp_path / "m.tflite"), "--eval-data", str(digits / "val"), "--min-sqnr", "45", "--no-cache"]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on the terminal
        os.environ.pop("CI", None)
        os.execv(command[0], command)
    out, deadline = b"", time.monotonic() + 300
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            out += chunk
            if not chunk:
                break
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode(errors="replace"))
    assert os.waitstatus_to_exitcode(status) in (0, 1), text[-2000:]
    for shown in ("import", "calibrate", "search: candidates", "best so far", "wrote"):
        assert shown in text, shown


@pytest.mark.tf
def test_ci_lines_reach_a_stderr_without_a_descriptor(monkeypatch, tmp_path):
    """Click's test runner (and a notebook) give a stderr with no file descriptor: CI's lines go to
    it instead of the command failing (it did, with exit 1 and no word)."""
    from helpers import ROOT
    from typer.testing import CliRunner

    from edgeq.cli import app

    monkeypatch.setenv("CI", "true")
    digits = ROOT / "representative_data" / "digits"
    sys.path.insert(0, str(ROOT / "demo"))
    from train_digits import train

    train(tmp_path / "digits.keras", epochs=1, side=8)
    result = CliRunner().invoke(
        app, ["convert", str(tmp_path / "digits.keras"), "-d", str(digits / "calib"), "-o", str(tmp_path / "m.tflite")]
    )
    assert result.exit_code == 0, (result.exception, result.stderr)
    assert re.search(r"^edgeq: \S.* took \d+\.\d s$", result.stderr, re.M), result.stderr
