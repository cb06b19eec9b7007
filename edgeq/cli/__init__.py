"""The edgeq command line: one module per command; each parses its options, calls the library,
prints, and maps errors to exit codes (0 pass, 1 a gate failed, 2 bad input or usage, 3 internal).

Imports stay light here: TensorFlow is only imported inside the library calls that need it.
"""

from __future__ import annotations

import signal
import sys

import typer

from edgeq.cli import bundle, compile, convert, devices, inspect, report, validate  # noqa: F401 - they register their commands
from edgeq.cli.common import app, state
from edgeq.core.escape import terminal
from edgeq.core.fileio import FULL, no_room
from edgeq.host.scratch import run_folder

__all__ = ["app", "run"]


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary files are removed on the way out."""
    raise KeyboardInterrupt


def run() -> None:
    """The console entry point: an unexpected exception is one line and exit 3, never a traceback
    (exit 1 stays "a gate failed")."""
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past `ulimit -f` a write fails (EFBIG) instead of killing edgeq
    try:
        with run_folder():
            app()
    except KeyboardInterrupt:
        typer.echo("edgeq: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in FULL:
            internal_error(exc)
        typer.echo(f"edgeq: error: {terminal(no_room(exc, exc.filename or 'a file edgeq writes'))}", err=True)
        sys.exit(2)
    except Exception as exc:
        internal_error(exc)


def internal_error(exc: BaseException) -> None:
    """One line and exit 3: edgeq's own bug (or a tool it drives), never a traceback."""
    if state["verbose"]:
        import traceback

        traceback.print_exception(exc)
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    typer.echo(f"edgeq: internal error: {type(exc).__name__}: {terminal(detail)} (rerun with -v for the traceback)", err=True)
    sys.exit(3)
