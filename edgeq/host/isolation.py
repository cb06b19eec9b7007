"""Run a native-code step (TensorFlow's converter, calibrator, quantizer; LiteRT's accelerators) in
a child process, so that a crash in it is one line and exit 2, never a segfault of edgeq.

The child is spawned (never forked: a parent may hold TensorFlow's threads), dies with its parent,
writes no core file, and sends back its result, an EdgeqError, or the first line of any other
exception. Progress and warnings travel to the parent as they happen; the step the child was in
names the crash.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from edgeq.core import progress
from edgeq.core.errors import ConversionError, EdgeqError
from edgeq.core.progress import report, reporting

log = logging.getLogger(__name__)
STEP = "step"  # progress label of "now entering step X"


class NativeCrash(ConversionError):
    """The child died by a signal (or exited without a result)."""


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def main_module_hidden():
    """Spawned children re-run the parent's __main__ unless told it has none; the child code lives
    in edgeq, so hide it: a script calling edgeq.convert without `if __name__ == "__main__"` works."""
    main = sys.modules["__main__"]
    saved: dict[str, object] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def step(name: str) -> None:
    """Say which native step runs now: a crash is reported as happening in it.

    EDGEQ_TEST_CRASH=<step> aborts there: the tests' way to crash a real child on purpose.
    """
    report(f"{STEP}:{name}", 0, None)
    if os.environ.get("EDGEQ_TEST_CRASH") == name:
        os.abort()


class _Forward(logging.Handler):
    def __init__(self, events, level: int):
        super().__init__(level)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        self.events.put(("log", record.levelno, record.getMessage()))


def _child(name: str, args: tuple, results, events, level: int = logging.WARNING) -> None:
    """`name` ("module:qualname") is imported here, after die_with_parent: importing TensorFlow
    takes seconds, and a child orphaned meanwhile must not live on."""
    die_with_parent()
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    except (ImportError, ValueError, OSError):
        pass
    logging.getLogger("edgeq").addHandler(_Forward(events, level))  # the parent's level: -v shows the child's INFO lines
    logging.getLogger("edgeq").setLevel(level)
    logging.getLogger("edgeq").propagate = False  # a library's root handler (Ray's, absl's) would print them twice
    try:
        import importlib

        module, qualname = name.split(":")
        function: Any = importlib.import_module(module)
        for part in qualname.split("."):
            function = getattr(function, part)
        with reporting(lambda label, done, total, note: events.put(("progress", label, done, total, note))):
            value = function(*args)
        results.send(("ok", value))
    except EdgeqError as exc:
        results.send(("edgeq", exc))
    except BaseException as exc:
        import traceback

        lines = str(exc).strip().splitlines()
        frames = traceback.extract_tb(exc.__traceback__)
        ours = bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE)
        results.send(
            (
                "exception",
                (
                    f"{type(exc).__name__}: {lines[0][:300]}"
                    if ours and lines
                    else lines[0][:300]
                    if lines
                    else type(exc).__name__,
                    "".join(traceback.format_exception(exc)),
                    ours,
                ),
            )
        )
    finally:
        events.put(("done",))


def run_isolated(function: Callable[..., Any], *args: Any, what: str = "the TFLite converter") -> Any:
    """`function(*args)` in a spawned child; its return value, or its EdgeqError raised here.

    Any other exception comes back as RuntimeError(first line); a crash as NativeCrash naming
    the signal and the step the child was in.
    """
    context = get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    events = context.SimpleQueue()  # written synchronously: the last step survives a crash
    child = context.Process(
        target=_child,
        args=(
            f"{function.__module__}:{function.__qualname__}",
            args,
            send,
            events,
            min(logging.WARNING, logging.getLogger("edgeq").getEffectiveLevel()),
        ),
    )
    current = {"step": "starting"}
    listener = progress.current()

    def relay() -> None:
        while True:
            event = events.get()
            if event[0] == "done":
                return
            if event[0] == "log":
                log.log(event[1], "%s", event[2])
            elif event[1].startswith(f"{STEP}:"):
                current["step"] = event[1].split(":", 1)[1]
            elif listener is not None:
                try:
                    listener(*event[1:])
                except Exception:  # a progress display that fails must not stop the relay (the child would block)
                    log.debug("progress listener failed", exc_info=True)

    with main_module_hidden():
        child.start()
    send.close()
    relayer = threading.Thread(target=relay, daemon=True)
    relayer.start()
    try:
        status, payload = receive.recv()
    except EOFError:  # the child died without a word
        child.join()
        events.put(("done",))
        raise NativeCrash(_crash_line(what, child.exitcode, current["step"])) from None
    except BaseException:
        child.terminate()
        child.join()
        raise
    child.join()
    relayer.join(timeout=5)
    if status == "ok":
        return payload
    if status == "edgeq":
        raise payload
    raise ChildError(*payload)


PACKAGE = Path(__file__).resolve().parents[1]  # edgeq/


class ChildError(RuntimeError):
    """An exception in the child that is no EdgeqError: `ours` when edgeq's own code raised it
    (an internal error), else TensorFlow's or LiteRT's; `child_traceback` for -v."""

    def __init__(self, message: str, child_traceback: str, ours: bool) -> None:
        super().__init__(message)
        self.child_traceback, self.ours = child_traceback, ours


def _crash_line(what: str, exitcode: int | None, step_name: str) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"crashed with {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited ({exitcode}) without a result"
    advice = next((a for step, a in STEP_ADVICE.items() if step_name.startswith(step)), CONVERTER_ADVICE)
    return (
        f"{what} {how} while {step_name} (native code; nothing was written); {advice}, and rerun with -v for TensorFlow's own log"
    )


CONVERTER_ADVICE = "try --mode int8-fallback or --keep-float on the layer it stopped at"
STEP_ADVICE = {"refining": "try --refine none, or the other method"}  # a step whose remedy is not the converter's
