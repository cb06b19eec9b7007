"""A Ray cluster for edgeq's runs (`--cluster ADDRESS`, `pip install 'edgeq[ray]'`): joining it,
and running independent pieces of work on it as tasks whose results come back in order.

What a task needs travels with it through Ray's object store (no path is assumed to be shared);
the workers need edgeq installed as on this machine (a task is a function of edgeq's)."""

from __future__ import annotations

import importlib.util
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from edgeq.core.errors import UsageError
from edgeq.core.progress import report

INSTALL = "pip install 'edgeq[ray]'"
log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(address: str) -> Any:
    """Ray, joined to `address` (`local` starts a runtime for this run; else what ray.init takes)."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"--cluster needs Ray, which this install lacks: {INSTALL}")
    import ray

    host, _, port = address.rpartition(":")
    if host and port.isdigit() and "://" not in address:  # Ray retries an absent head for minutes: ask once first
        import socket

        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as exc:
            raise UsageError(
                f"--cluster {address}: nothing answers there ({exc.strerror or exc}); start a head node with "
                "`ray start --head` or pass --cluster local"
            ) from None
    if not ray.is_initialized():
        try:
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"--cluster {address}: cannot join the Ray cluster ({' '.join(str(exc).split())[:200]}); "
                "start one with `ray start --head` or pass --cluster local"
            ) from None
    return ray


def placements(ray: Any) -> list[Any]:
    """One scheduling strategy per node with CPUs, to deal tasks round the nodes (soft: a busy or
    lost node's task runs elsewhere). Ray's SPREAD is best effort, and a node still starting its
    first worker would otherwise get none."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return [
        NodeAffinitySchedulingStrategy(n["NodeID"], soft=True) for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")
    ] or ["SPREAD"]


def node_id() -> str:
    """On a worker: the node it runs on."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _on_node(function: Callable[..., T], item: Any, *shared: Any) -> tuple[str, T]:
    return node_id(), function(item, *shared)


def each(address: str | None, label: str, function: Callable[..., T], items: Sequence[Any], shared: tuple = ()) -> list[T]:
    """`function(item, *shared)` for every item, in order: here one after the other without an
    address, else as Ray tasks at once, dealt round the nodes; `shared` goes into the object store
    once. `function` must be importable on the workers (one of edgeq's); items are pickled by Ray.
    Progress: tasks done per node."""
    if address is None or len(items) < 2:
        return [function(item, *shared) for item in items]
    ray = connect(address)
    task = ray.remote(num_cpus=1)(_on_node)
    places = placements(ray)
    shared_refs = [ray.put(value) for value in shared]
    refs = [
        task.options(scheduling_strategy=places[i % len(places)]).remote(function, item, *shared_refs)
        for i, item in enumerate(items)
    ]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(items)
    nodes: Counter[str] = Counter()
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        node, results[index[ready[0]]] = ray.get(ready[0])
        nodes[node] += 1
        report(f"{label} on the Ray cluster ({len(waiting)} running or queued), node {node[:8]}", nodes[node], None)
    log.info(
        "Ray cluster: %d task(s) (%s) on %d node(s): %s",
        len(items),
        label,
        len(nodes),
        ", ".join(f"{node[:8]} {count}" for node, count in sorted(nodes.items())),
    )
    return results
