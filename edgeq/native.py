"""Keep TensorFlow's native log lines (written straight to fd 2) out of a user's terminal.

They are captured to a temporary file; on failure the caller can quote the relevant line.
"""

from __future__ import annotations

import contextlib
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
def captured_native_stderr(enabled: bool = True) -> Iterator[Captured]:
    captured = Captured()
    if not enabled:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
