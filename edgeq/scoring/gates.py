"""Gates: thresholds on a run's figures, each passed, failed or not applicable.

A gate reads a typed `Figures` record, never a path into a dict. A runner that cannot give a
figure (a latency-only device has no outputs to score) makes the gates on it "n/a", which does
not fail the run; a figure that should be there and is not (no labels for a top-1 gate) fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from edgeq.core.errors import UsageError


@dataclass(frozen=True)
class AccuracyLimits:
    """The accuracy thresholds convert's budget and validate's gates share (one owner of each)."""

    max_drop: float | None = None  # top-1 points lost, needs labels
    min_agreement: float | None = None  # INT8/float top-1 agreement, a fraction
    min_sqnr: float | None = None  # dB, every output judged
    min_iou: float | None = None  # a mask output's IoU with float's mask, a fraction

    def __post_init__(self) -> None:
        if self.min_iou is not None and not 0 <= self.min_iou <= 1:
            raise UsageError(f"--min-iou is a fraction from 0 to 1, got {self.min_iou:g}")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            hint = (
                f"; for {self.min_agreement:g}% give {self.min_agreement / 100:g} or {self.min_agreement:g}%"
                if 1 < self.min_agreement <= 100
                else ""
            )
            raise UsageError(f"--min-agreement is a fraction from 0 to 1, got {self.min_agreement:g}{hint}")


@dataclass(frozen=True)
class Gates(AccuracyLimits):
    """validate's thresholds; each one given is a gate (GATES says what it checks)."""

    min_slice_sqnr: float | None = None  # dB, the worst slice of any output
    max_latency_ms: float | None = None  # INT8 p50
    min_speedup: float | None = None  # float p50 / INT8 p50
    max_regression_pts: float | None = None  # top-1 points below --baseline's
    max_latency_regression: float | None = None  # INT8 p50 growth over --baseline's, %
    max_size_growth: float | None = None  # model size growth over --baseline's, %

    @classmethod
    def of(cls, limits: Mapping[str, float]) -> Gates:
        """From {gate name: limit} (the API's gates=, a results file's gates); an unknown name is one UsageError line."""
        check_names(dict(limits))
        return cls(**{k: float(v) for k, v in limits.items()})

    def limits(self) -> dict[str, float]:
        """The gates given, {name: limit}, in GATES' order."""
        return {f.name: value for f in fields(self) for value in [getattr(self, f.name)] if value is not None}


@dataclass(frozen=True)
class Gate:
    name: str
    description: str
    figure: str  # the Figures field it checks
    bound: str  # "max" | "min"
    needs_outputs: bool  # an accuracy gate: not applicable to a latency-only runner


GATES = {
    g.name: g
    for g in (
        Gate("max_drop", "top-1 drop (pts)", "top1_drop_pts", "max", True),
        Gate("min_agreement", "top-1 agreement", "agreement", "min", True),
        Gate("min_sqnr", "SQNR (dB), worst output", "worst_sqnr_db", "min", True),
        Gate("min_iou", "mask IoU with float's, worst mask output", "worst_iou", "min", True),
        Gate("min_slice_sqnr", "SQNR (dB), worst slice of any output", "worst_slice_sqnr_db", "min", True),
        Gate("max_latency_ms", "INT8 p50 latency (ms)", "int8_p50_ms", "max", False),
        Gate("min_speedup", "speedup (float p50 / INT8 p50)", "speedup", "min", False),
        Gate("max_regression_pts", "top-1 regression vs baseline (pts)", "regression_pts", "max", True),
        Gate("max_latency_regression", "INT8 p50 latency growth vs baseline (%)", "latency_regression_pct", "max", False),
        Gate("max_size_growth", "model size growth vs baseline (%)", "size_growth_pct", "max", False),
    )
}
NO_VALUE = {
    "top1_drop_pts": "no value to check: no labels, or no classes output",
    "agreement": "no value to check: no classes output",
    "worst_iou": "no value to check: no mask output (a LOGISTIC map of the input's size, or --output-role KEY=mask)",
    "worst_slice_sqnr_db": "no value to check: no output axis of 2 to 256 entries to slice",
}
BASELINE_GATES = ("max_regression_pts", "max_latency_regression", "max_size_growth")


@dataclass(frozen=True)
class Figures:
    """What one runner measured, as the gates see it; None where it was not measured."""

    top1_drop_pts: float | None = None
    agreement: float | None = None
    worst_sqnr_db: float | None = None
    int8_p50_ms: float | None = None
    speedup: float | None = None  # float p50 / INT8 p50, on the same runner
    scores_outputs: bool = True  # False for a latency-only runner
    regression_pts: float | None = None  # against a baseline results file: top-1 points lost
    latency_regression_pct: float | None = None  # INT8 p50 growth, %
    size_growth_pct: float | None = None  # model size growth, %
    worst_slice_sqnr_db: float | None = None  # the worst per-index SQNR along any output axis
    exact: bool = False  # every output equals float: no SQNR to give, and none needed
    real_latency: bool = True  # False: emulated, or a software adapter: its timings are not the device's latency
    worst_iou: float | None = None  # the lowest IoU of a mask output with float's mask


LATENCY_FIGURES = ("int8_p50_ms", "speedup", "latency_regression_pct")


@dataclass(frozen=True)
class GateResult:
    name: str
    description: str
    limit: float
    value: float | None
    status: str  # "passed" | "failed" | "n/a"
    passed: bool | None = None  # None: not applicable
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def check_names(limits: dict[str, float]) -> None:
    unknown = set(limits) - set(GATES)
    if unknown:
        raise UsageError(f"unknown gate(s) {sorted(unknown)}; known: {', '.join(GATES)}")


def evaluate(limits: Mapping[str, float], figures: Figures) -> list[GateResult]:
    results = []
    for name, limit in limits.items():
        gate = GATES[name]
        value = getattr(figures, gate.figure)
        if gate.needs_outputs and not figures.scores_outputs:
            results.append(
                GateResult(
                    name,
                    gate.description,
                    limit,
                    None,
                    "n/a",
                    None,
                    "not applicable: this runner measures latency only (no outputs to score)",
                )
            )
            continue
        if gate.figure in LATENCY_FIGURES and not figures.real_latency:
            results.append(
                GateResult(
                    name,
                    gate.description,
                    limit,
                    None,
                    "n/a",
                    None,
                    "not applicable: this runner's timings are not latency (emulated, or a software adapter)",
                )
            )
            continue
        if value is None and figures.exact and gate.figure in ("worst_sqnr_db", "worst_slice_sqnr_db"):
            results.append(GateResult(name, gate.description, limit, None, "passed", True, "INT8 equals float exactly: no error"))
            continue
        ok = value is not None and (value <= limit if gate.bound == "max" else value >= limit)
        results.append(
            GateResult(
                name,
                gate.description,
                limit,
                value,
                "passed" if ok else "failed",
                ok,
                None if value is not None else NO_VALUE.get(gate.figure, "no value to check"),
            )
        )
    return results


def passed(results: list[GateResult]) -> bool:
    return not any(r.failed for r in results)
