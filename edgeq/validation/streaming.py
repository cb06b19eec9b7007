"""Validation at scale: samples stream through the INT8 and float interpreters, several pairs at
once, and what a --device run needs later is spilled to disk instead of kept in memory.

Concurrency is by threads: LiteRT releases the GIL while it invokes, and the image decoding that
feeds it (Pillow) does too. Each thread takes a pair of interpreters of its own; results come back
in sample order, so every figure equals a one-pair run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import TypeVar

import numpy as np

from edgeq.core.progress import report
from edgeq.run.litert import LiteRTRunner

T = TypeVar("T")
I = TypeVar("I")
R = TypeVar("R")
Run = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]  # feeds, INT8 feeds, INT8 raw, float


def paired_runs(
    samples: Iterable[list[np.ndarray]],
    int8: LiteRTRunner,
    reference: LiteRTRunner,
    to_reference: list[int],
    output_order: Sequence[int],
    jobs: int = 1,
    int8_raw: list[np.ndarray] | None = None,
) -> Iterator[Run]:
    """Per sample, in order: its feeds, the INT8 model's (quantized) feeds and raw outputs, and the
    float outputs in the INT8 model's output order and shapes. `jobs` pairs run at once.
    `int8_raw`: the INT8 model's raw outputs stacked per output (from `int8_runs`), not run again."""
    shapes = [int8.output_ports[m].shape for m in range(len(output_order))]

    def run(pair: tuple[LiteRTRunner, LiteRTRunner], item: tuple[int, list[np.ndarray]]) -> Run:
        (quantized, floating), (index, feeds) = pair, item
        model_feeds = quantized.quantize_inputs(feeds)
        raw = quantized.run_raw(model_feeds) if int8_raw is None else [np.asarray(column[index]) for column in int8_raw]
        got = floating.run([feeds[k] for k in to_reference])
        return feeds, model_feeds, raw, [got[j].reshape(shapes[m]) for m, j in enumerate(output_order)]

    return in_order(run, enumerate(samples), (int8, reference), lambda: (int8.clone(), reference.clone()), jobs)


def int8_runs(samples: Iterable[list[np.ndarray]], int8: LiteRTRunner, jobs: int, spill: Spill) -> None:
    """The INT8 model's raw outputs on every sample, into `spill` as "int8_first" (what runs while
    the float reference is still being converted)."""

    def run(runner: LiteRTRunner, item: tuple[int, list[np.ndarray]]) -> tuple[int, list[np.ndarray]]:
        index, feeds = item
        return index, runner.run_raw(runner.quantize_inputs(feeds))

    for index, raw in in_order(run, enumerate(samples), int8, int8.clone, jobs):
        spill.add("int8_first", index, raw)
        report("running INT8 while the float reference converts", index + 1, spill.rows)


def in_order(run: Callable[[T, I], R], items: Iterable[I], first: T, another: Callable[[], T], jobs: int) -> Iterator[R]:
    """`run(runner, item)` for every item, results in item order; `jobs` runners (the first, and
    `another()` for the rest) each in a thread of its own, a bounded window of items in flight."""
    if jobs <= 1:
        for item in items:
            yield run(first, item)
        return
    runners: SimpleQueue = SimpleQueue()
    runners.put(first)
    for _ in range(jobs - 1):
        runners.put(another())

    def task(item: I) -> R:
        runner = runners.get()
        try:
            return run(runner, item)
        finally:
            runners.put(runner)

    with ThreadPoolExecutor(jobs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(task, item))
            if len(pending) >= 2 * jobs:  # a bounded window: memory stays flat in the sample count
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Spill:
    """Per-sample arrays stacked on disk as they come, on a new leading axis (.npy memory maps in
    `folder`), so that a --device run keeps memory flat in the sample count."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder, self.rows = folder, rows
        self.columns: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, index: int, arrays: list[np.ndarray]) -> None:
        if name not in self.columns:
            self.columns[name] = [
                np.lib.format.open_memmap(self.folder / f"{name}_{k}.npy", mode="w+", dtype=a.dtype, shape=(self.rows, *a.shape))
                for k, a in enumerate(arrays)
            ]
        for column, array in zip(self.columns[name], arrays):
            column[index] = array

    def stacked(self, name: str) -> list[np.ndarray]:
        return self.columns[name]
