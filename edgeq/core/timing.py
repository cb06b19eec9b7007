"""Where a command's time went: wall seconds per named phase, summed when a phase recurs.

A stage marks its phases with `phase(name)`; they count towards whichever `Timings` is being
recorded in this process (none: nothing is kept). The conversion child records its own and sends
them to the parent, which adds them to its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from edgeq.core.progress import PHASE, report

_recording: list[Timings] = []


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def merge(self, other: dict[str, float]) -> None:
        for name, seconds in other.items():
            self.add(name, seconds)

    @contextmanager
    def recording(self) -> Iterator[Timings]:
        """Count the phases marked in this process towards these timings, until the block ends."""
        _recording.append(self)
        try:
            yield self
        finally:
            _recording.remove(self)

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as `name`, and tell the progress listener it started and ended."""
    started = time.perf_counter()
    report(f"{PHASE}:{name}", 0, None)
    try:
        yield
    finally:
        if _recording:
            _recording[-1].add(name, time.perf_counter() - started)
        report(f"{PHASE}:{name}", 1, None)
