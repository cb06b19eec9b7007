"""Samples decoded ahead, in a thread of their own, while the conversion exports the model: image
decoding (Pillow) and NumPy release the GIL, so the reading costs no time on a second core."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from queue import Empty, Full, Queue
from typing import TypeVar

T = TypeVar("T")
AHEAD_BYTES = 256 << 20  # at most this much decoded ahead of the consumer
_END = object()


def read_ahead(items: Iterable[T], item_bytes: int) -> Iterator[T]:
    """`items` in their order, read by a thread from now on, at most AHEAD_BYTES ahead; an error
    while reading is raised where the item would have come."""
    queue: Queue = Queue(maxsize=max(2, AHEAD_BYTES // max(item_bytes, 1)))
    stop = threading.Event()

    def fill() -> None:
        try:
            for item in items:
                _put(queue, ("item", item), stop)
            _put(queue, ("end", _END), stop)
        except BaseException as exc:
            _put(queue, ("error", exc), stop)

    threading.Thread(target=fill, daemon=True, name="edgeq-read-ahead").start()
    return _drained(queue, stop)


def _put(queue: Queue, entry: tuple, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            queue.put(entry, timeout=0.5)
            return
        except Full:
            continue


def _drained(queue: Queue, stop: threading.Event) -> Iterator:
    try:
        while True:
            try:
                kind, value = queue.get(timeout=0.5)
            except Empty:
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()  # the consumer stopped early or finished: the reader stops too
