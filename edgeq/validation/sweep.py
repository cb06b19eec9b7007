"""The sample loop: every sample through the INT8 and the float model (locally, in --jobs pairs, or
on a Ray cluster), streamed sequences with --feedback, and the latency timed alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import DataError, UsageError
from edgeq.core.progress import report
from edgeq.data.samples import InputSpec, Preprocessing, SampleSource, open_samples
from edgeq.host.machine import this_cpu
from edgeq.run.litert import LiteRTRunner, within_noise
from edgeq.scoring.metrics import Scorer
from edgeq.scoring.roles import Role, decide_roles
from edgeq.scoring.speed import speedup
from edgeq.tflite.metadata import read_metadata
from edgeq.validation.feedback import Streaming, streamed
from edgeq.validation.options import ValidateOptions
from edgeq.validation.results import (
    Latency,
    Percentiles,
)
from edgeq.validation.streaming import Spill, paired_runs


@dataclass(frozen=True)
class Sweep:
    """What one pass over the validation samples gave: the scores, the inputs' observed ranges,
    the first sample (for the latency runs) and, for --device runs, the spilled outputs."""

    samples: Any
    scorer: Scorer
    roles: list[Role]
    first: list
    low: list[float]
    high: list[float]
    kept: Spill | None


def samples_of(int8: LiteRTRunner, data, options: ValidateOptions, pre: Preprocessing) -> SampleSource:
    metadata = read_metadata(int8.model.data)
    return open_samples(data, specs_of(int8), pre, options.limit, options.seed, metadata.labels if metadata is not None else None)


def run_sweep(
    int8: LiteRTRunner,
    ref: LiteRTRunner,
    data,
    options: ValidateOptions,
    pre: Preprocessing,
    to_reference: list[int],
    output_order: Sequence[int],
    scratch: Path,
    keep: bool = False,
    int8_first: list[np.ndarray] | None = None,
) -> Sweep:
    """The sample loop: INT8 and float on every sample, scored per output; one audit of the inputs.
    `int8_first`: the INT8 outputs, run while the reference was converted."""
    specs = specs_of(int8)
    samples = samples_of(int8, data, options, pre)
    labels = samples.labels
    roles = decide_roles(
        int8.output_facts(),
        options.output_roles,
        len(samples.class_names) if samples.class_names else None,
        [tuple(p.shape) for p in int8.input_ports],
    )
    check_gates_have_classes(options.gates.limits(), roles)
    headline = headline_output(roles, [p.shape for p in int8.output_ports], len(samples.class_names or []))
    scorer = Scorer(
        [p.label for p in int8.output_ports],
        [r.role for r in roles],
        options.top_k,
        headline,
        options.score_threshold,
        {i: r.blank for i, r in enumerate(roles) if r.blank is not None},
    )
    kept = (
        Spill(scratch, len(samples)) if options.devices or options.accelerators or keep else None
    )  # for --device runs: on disk, not in memory
    first = None
    low, high = [float("inf")] * len(specs), [float("-inf")] * len(specs)
    if options.cluster and int8_first is None:
        from edgeq.validation.cluster import paired_runs_on

        runs = paired_runs_on(options.cluster, samples, int8, ref, to_reference, output_order, len(samples))
    else:
        runs = paired_runs(samples, int8, ref, to_reference, output_order, options.jobs, int8_first)
    for i, (feeds, model_feeds, raw, want) in enumerate(runs):
        first = first or feeds
        for k, array in enumerate(feeds):
            low[k], high[k] = min(low[k], float(array.min())), max(high[k], float(array.max()))
        scorer.add(want, int8.dequantize_outputs(raw), labels[i] if labels is not None else None)
        if kept is not None:
            kept.add("inputs", i, model_feeds)
            kept.add("int8_raw", i, raw)
            kept.add("float", i, want)
        report("comparing with float", i + 1, len(samples))
    if first is None:
        raise DataError(f"{samples.describe()}: no samples to validate with")
    return Sweep(samples, scorer, roles, first, low, high, kept)


def time_latency(int8: LiteRTRunner, ref: LiteRTRunner, first: list, first_reference: list, options: ValidateOptions) -> Latency:
    int8_latency = int8.time(first, options.warmup, options.runs)
    float_latency = ref.time(first_reference, options.warmup, options.runs)
    return Latency(
        delegate=int8.delegate,
        threads=options.threads,
        warmup=options.warmup,
        runs=options.runs,
        int8_ms=Percentiles.of(int8_latency),
        float_ms=Percentiles.of(float_latency),
        speedup=speedup(float_latency.p50, int8_latency.p50),
        within_noise=within_noise(int8_latency, float_latency),
        delegated_nodes=int8.delegated_nodes,
        total_nodes=int8.total_nodes,
        cpu_fallback_ops=int8.kept_ops,
        partitions=int8.partitions,
        float_delegated_nodes=ref.delegated_nodes,
        float_total_nodes=ref.total_nodes,
        cpu=None if options.delegate_library else this_cpu().describe(),
    )


def run_streaming(
    int8: LiteRTRunner,
    ref: LiteRTRunner,
    data,
    options: ValidateOptions,
    pre: Preprocessing,
    to_reference: list[int],
    output_order: Sequence[int],
) -> Streaming:
    """The samples in the data's order (the first --limit of them), run as sequences with --feedback."""
    source = open_samples(data, specs_of(int8), pre, None, options.seed)
    return streamed(
        int8,
        ref,
        source.in_data_order()[: options.limit],
        getattr(source, "starts", set()),
        options.feedback,
        to_reference,
        output_order,
    )


def specs_of(runner: LiteRTRunner) -> list[InputSpec]:
    """The model's inputs, named by signature key where it has one (the keys of a .npz)."""
    return [InputSpec(p.label, p.shape) for p in runner.input_ports]


def headline_output(roles: list[Role], shapes: list[tuple[int, ...]], class_count: int) -> int | None:
    """The classes output the headline accuracy is about: the one with as many values as the
    labelled classes, else the first."""
    classes = [i for i, r in enumerate(roles) if r.role == "classes"]
    counted = [i for i in classes if math.prod(shapes[i]) == class_count]
    return (counted or classes or [None])[0]


def check_gates_have_classes(gates: dict[str, float], roles: list[Role]) -> None:
    """A gate that judges classes (or a mask) on a model with none is usage, not a failed gate."""
    if "min_iou" in gates and not any(r.role == "mask" for r in roles):
        raise UsageError(
            "--min-iou judges a mask output, and this model has none (a LOGISTIC map of the input's size); "
            "gate with --min-sqnr, or name one with --output-role KEY=mask"
        )
    needing = [
        g
        for g in ("max_drop", "min_agreement", "max_regression_pts")
        if g in gates
        if not (g == "min_agreement" and any(r.role == "sequence" for r in roles))
    ]
    if needing and not any(r.role == "classes" for r in roles):
        evidence = "; ".join(f"{r.evidence}" for r in roles[:3])
        raise UsageError(
            f"--{needing[0].replace('_', '-')} judges a classes output, and this model has none ({evidence}); "
            "gate with --min-sqnr/--min-slice-sqnr, or name one with --output-role KEY=classes"
        )
