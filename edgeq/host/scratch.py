"""edgeq's temporary files: one folder per command run, in which every temporary file of the run
and of its child processes lands (tempfile and $TMPDIR point there). It goes when the run ends; when
the run is killed (kill -9 leaves no time to clean up) a watchdog forked at the start removes it,
and the next run removes the folders of runs whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = "edgeq-run-"


@contextlib.contextmanager
def run_folder() -> Iterator[Path]:
    """The run's scratch folder, current for tempfile and for child processes while it lasts."""
    base = Path(tempfile.gettempdir())
    remove_stale(base)
    # named first, watched, then made: a kill between making it and forking the watchdog left it behind
    folder = base / f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    _watch(folder)
    folder.mkdir(mode=0o700)
    tempfile.tempdir, os.environ["TMPDIR"] = str(folder), str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(base: Path) -> None:
    """Scratch folders of edgeq runs whose process no longer exists."""
    for folder in base.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _watch(folder: Path) -> None:
    """A forked watchdog that the kernel signals when this process dies (PR_SET_PDEATHSIG), however
    it dies; it removes `folder` and exits. Forked before any framework starts a thread."""
    parent = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pid = os.fork()
    except OSError:
        return
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if pid:
        return
    try:  # the watchdog: nothing of the parent's is used past this point but `folder`
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent handles it
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 1024)  # no pipe of the parent's (a caller's stdout) is held open
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == parent:
            signal.sigwait({signal.SIGTERM})
        for _ in range(10):  # the run's children die with it and may still be writing
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                break
            time.sleep(0.2)
    finally:
        os._exit(0)
