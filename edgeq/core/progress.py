"""Progress of the long loops (calibration, the search's evaluations, validation) and of the
timed phases (edgeq.core.timing), reported to whoever listens: the CLI draws them on a terminal and
writes a line per phase in CI; the library stays silent otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

Listener = Callable[[str, int, "int | None", str], None]  # label, done, total, a note (e.g. the best so far)
PHASE = "phase"  # label prefix of a timed phase: done 0 when it starts, 1 when it ends
SEARCH = "search: candidates"  # the accuracy search's count of candidates tried, its note the best so far
T = TypeVar("T")

_listener: ContextVar[Listener | None] = ContextVar("edgeq_progress", default=None)


@contextmanager
def reporting(listener: Listener | None) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def current() -> Listener | None:
    """The listener of this context, to hand to a thread (threads do not inherit it)."""
    return _listener.get()


def report(label: str, done: int, total: int | None, note: str = "") -> None:
    listener = _listener.get()
    if listener is not None:
        listener(label, done, total, note)


def counted(label: str, items: Iterable[T], total: int | None) -> Iterator[T]:
    """`items`, reporting each one as done."""
    for done, item in enumerate(items, 1):
        yield item
        report(label, done, total)
