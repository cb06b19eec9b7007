"""validate's sample loop on a Ray cluster (`--cluster ADDRESS`, `pip install 'edgeq[ray]'`).

The models and each shard of samples reach the workers through Ray's object store (no path is
assumed to be shared); every worker process keeps one INT8 and one float interpreter per model.
The workers only run the models: the shards come back in order and the driver scores every
sample in the same order as a local run, so every figure equals `--jobs 1`'s.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edgeq.core.progress import report
from edgeq.run.cluster import connect, node_id, placements
from edgeq.run.litert import LiteRTRunner
from edgeq.validation.streaming import Run

log = logging.getLogger(__name__)
SHARD = 32  # samples per task: big enough that Ray's per-task cost (a few ms) is small beside the invokes
IN_FLIGHT_PER_CPU = 2

_RUNNERS: dict[tuple[str, str, int], LiteRTRunner] = {}  # per worker process: one interpreter per model


def _runner(model: bytes, delegate: str, threads: int) -> LiteRTRunner:
    key = (hashlib.sha256(model).hexdigest(), delegate, threads)
    if key not in _RUNNERS:
        path = Path(tempfile.mkdtemp(prefix="edgeq-ray-")) / f"{key[0][:16]}.tflite"
        path.write_bytes(model)
        _RUNNERS[key] = LiteRTRunner(path, delegate, threads)
    return _RUNNERS[key]


def run_shard(
    int8_model: bytes,
    float_model: bytes,
    delegate: str,
    threads: int,
    feeds: list[list[np.ndarray]],
    to_reference: list[int],
    output_order: Sequence[int],
    shapes: list[tuple[int, ...]],
) -> tuple[str, list[tuple[list, list, list]]]:
    """On a worker: the node it ran on, then the INT8 model's feeds and raw outputs and the float
    outputs of each sample."""
    quantized, floating = _runner(int8_model, delegate, threads), _runner(float_model, delegate, threads)
    done = []
    for sample in feeds:
        model_feeds = quantized.quantize_inputs(sample)
        raw = quantized.run_raw(model_feeds)
        got = floating.run([sample[k] for k in to_reference])
        done.append((model_feeds, raw, [got[j].reshape(shapes[m]) for m, j in enumerate(output_order)]))
    return node_id(), done


def paired_runs_on(
    address: str,
    samples: Iterable[list[np.ndarray]],
    int8: LiteRTRunner,
    reference: LiteRTRunner,
    to_reference: list[int],
    output_order: Sequence[int],
    total: int,
) -> Iterator[Run]:
    """`streaming.paired_runs`, the invokes spread over the cluster in shards, results in sample order."""
    ray = connect(address)
    task = ray.remote(num_cpus=1)(run_shard)
    places = placements(ray)
    int8_ref, float_ref = ray.put(int8.path.read_bytes()), ray.put(reference.path.read_bytes())
    shapes = [int8.output_ports[m].shape for m in range(len(output_order))]
    window = max(2, IN_FLIGHT_PER_CPU * int(ray.cluster_resources().get("CPU", 1)))
    pending: deque = deque()
    iterator = iter(samples)
    done = submitted = 0

    def submit() -> bool:
        nonlocal submitted
        shard = [s for _, s in zip(range(SHARD), iterator)]
        if shard:
            placed = task.options(scheduling_strategy=places[submitted % len(places)])
            pending.append(
                (
                    shard,
                    placed.remote(int8_ref, float_ref, int8.delegate, int8.threads, shard, to_reference, output_order, shapes),
                )
            )
            submitted += 1
        return bool(shard)

    while len(pending) < window and submit():
        pass
    nodes: Counter[str] = Counter()
    while pending:
        shard, result = pending.popleft()
        node, ran = ray.get(result)
        nodes[node] += 1
        report(f"Ray node {node[:8]}: shards done", nodes[node], None)
        submit()
        for feeds, (model_feeds, raw, want) in zip(shard, ran):
            done += 1
            report("comparing with float (Ray cluster)", done, total)
            yield feeds, model_feeds, raw, want
    log.info(
        "Ray cluster: %d shard(s) of up to %d samples on %d node(s): %s",
        sum(nodes.values()),
        SHARD,
        len(nodes),
        ", ".join(f"{node[:8]} {count}" for node, count in sorted(nodes.items())),
    )
