"""Validation at scale: samples stream through the INT8 and float interpreters, several pairs at
once, and what a --device run needs later is spilled to disk instead of kept in memory.

Concurrency is by threads: LiteRT releases the GIL while it invokes, and the image decoding that
feeds it (Pillow) does too. Each thread takes a pair of interpreters of its own; results come back
in sample order, so every figure equals a one-pair run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue

import numpy as np

from edgeq.run.litert import LiteRTRunner

Run = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]  # feeds, INT8 feeds, INT8 raw, float


def paired_runs(samples: Iterable[list[np.ndarray]], int8: LiteRTRunner, reference: LiteRTRunner, to_reference: list[int],
                output_order: list[int], jobs: int = 1) -> Iterator[Run]:
    """Per sample, in order: its feeds, the INT8 model's (quantized) feeds and raw outputs, and the
    float outputs in the INT8 model's output order and shapes. `jobs` pairs run at once."""
    shapes = [int8.output_ports[m].shape for m in range(len(output_order))]

    def run(pair: tuple[LiteRTRunner, LiteRTRunner], feeds: list[np.ndarray]) -> Run:
        quantized, floating = pair
        model_feeds = quantized.quantize_inputs(feeds)
        raw = quantized.run_raw(model_feeds)
        got = floating.run([feeds[k] for k in to_reference])
        return feeds, model_feeds, raw, [got[j].reshape(shapes[m]) for m, j in enumerate(output_order)]

    if jobs <= 1:
        for feeds in samples:
            yield run((int8, reference), feeds)
        return
    pairs: SimpleQueue = SimpleQueue()
    pairs.put((int8, reference))
    for _ in range(jobs - 1):
        pairs.put((int8.clone(), reference.clone()))

    def task(feeds: list[np.ndarray]) -> Run:
        pair = pairs.get()
        try:
            return run(pair, feeds)
        finally:
            pairs.put(pair)

    with ThreadPoolExecutor(jobs) as pool:
        pending: deque = deque()
        for feeds in samples:
            pending.append(pool.submit(task, feeds))
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
            self.columns[name] = [np.lib.format.open_memmap(self.folder / f"{name}_{k}.npy", mode="w+", dtype=a.dtype,
                                                            shape=(self.rows, *a.shape))
                                  for k, a in enumerate(arrays)]
        for column, array in zip(self.columns[name], arrays):
            column[index] = array

    def stacked(self, name: str) -> list[np.ndarray]:
        return self.columns[name]
