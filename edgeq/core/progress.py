"""Progress of the long loops (calibration, the search's evaluations, validation), reported to
whoever listens: the CLI draws a bar on a terminal; the library stays silent otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

Listener = Callable[[str, int, "int | None"], None]
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


def report(label: str, done: int, total: int | None) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(label, done, total)


def counted(label: str, items: Iterable[T], total: int | None) -> Iterator[T]:
    """`items`, reporting each one as done."""
    for done, item in enumerate(items, 1):
        yield item
        report(label, done, total)
