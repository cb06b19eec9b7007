"""Keep TensorFlow's log lines (native ones go straight to fd 2) out of a user's terminal.

Native output is captured to a temporary file; on failure the caller can quote the relevant line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class Captured:
    text: str = ""

    def last_error_line(self) -> str | None:
        lines = [l.strip() for l in self.text.splitlines() if "error" in l.lower()]
        return lines[-1][:300] if lines else None


@contextlib.contextmanager
def captured_native_stderr(enabled: bool = True, stdout: bool = False) -> Iterator[Captured]:
    """`stdout`: fd 1 too (LiteRT's GPU loader prints there), into the same text."""
    captured = Captured()
    if not enabled:
        yield captured
        return
    sys.stderr.flush()
    noisy = [logging.getLogger(name) for name in ("absl", "tensorflow", "h5py")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    fds = (2, 1) if stdout else (2,)
    if stdout:
        sys.stdout.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            sys.stdout.flush()
            for fd, kept in zip(fds, saved):
                os.dup2(kept, fd)
                os.close(kept)
            for logger, level in zip(noisy, levels):
                logger.setLevel(level)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
