"""What `edgeq validate` found, as typed records: the results JSON is `to_json()` of them, and
`ValidationResult.from_json` reads one back (a CI artifact) with every value's type checked.

Field names are the JSON keys, so the contract of the results file is this module. Sections that
another module owns and renders as a whole (the conversion search, per-layer errors, the target
check) stay JSON objects here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeq.errors import DataError
from edgeq.gates import Figures, GateResult
from edgeq.metrics import BROKEN_DB, SLICE_GAP_DB
from edgeq.run.litert import Timings
from edgeq.run.protocol import Capabilities
from edgeq.schema import (
    RESULTS,
    SCHEMA_VERSION,
    check,
    check_version,
    from_json,
    to_json,
)


@dataclass(frozen=True)
class Accuracy:
    samples: int | None = None
    labelled: int | None = None
    float_top1: float | None = None
    int8_top1: float | None = None
    top1_drop_pts: float | None = None
    top_k: int | None = None
    float_topk: float | None = None
    int8_topk: float | None = None
    agreement: float | None = None
    output: str | None = None  # the `classes` output these figures are about; None: the model has none


@dataclass(frozen=True)
class Slice:
    """One index along one axis of an output (e.g. axis 1, index 7: the 8th of 84 rows)."""

    axis: int
    index: int
    sqnr_db: float


@dataclass(frozen=True)
class OutputScore:
    name: str
    role: str = "values"  # classes | score | values (edgeq.roles)
    role_from: str | None = None  # the evidence for the role
    sqnr_db: float | None = None  # None with exact: INT8 equals float
    exact: bool = False
    cosine: float | None = None
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    worst_slice: Slice | None = None
    agreement: float | None = None  # classes: top-1 agreement; score: same side of `threshold`
    threshold: float | None = None
    reference_name: str | None = None

    @classmethod
    def of(cls, scores: dict[str, Any], role_from: str | None = None, reference_name: str | None = None) -> OutputScore:
        """From one output of `Scorer.result()`."""
        worst = scores["worst_slice"]
        return cls(**{**scores, "worst_slice": Slice(**worst) if worst else None}, role_from=role_from,
                   reference_name=reference_name)

    @property
    def broken(self) -> bool:
        """Likely broken: the output, or a slice of it, below BROKEN_DB."""
        return any(db is not None and db < BROKEN_DB for db in (self.sqnr_db, self.worst_slice and self.worst_slice.sqnr_db))

    @property
    def slice_flagged(self) -> bool:
        """A slice far below the output as a whole (a class score among boxes)."""
        w = self.worst_slice
        return w is not None and (w.sqnr_db < BROKEN_DB or (self.sqnr_db is not None and w.sqnr_db < self.sqnr_db - SLICE_GAP_DB))


@dataclass(frozen=True)
class Timing:
    """Milliseconds per invoke; a runner fills what it measures (benchmark_model: no samples)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p5: float | None = None
    p95: float | None = None
    samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, measured: Timings) -> Timing:
        return cls(**{**measured.to_dict(), "samples": measured.samples_ms})


@dataclass(frozen=True)
class Latency:
    delegate: str | None = None
    threads: int | None = None
    warmup: int | None = None
    runs: int | None = None
    int8_ms: Timing = field(default_factory=Timing)
    float_ms: Timing = field(default_factory=Timing)
    speedup: float | None = None  # float p50 / INT8 p50, on the same runner
    within_noise: bool | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    cpu_fallback_ops: dict[str, int] = field(default_factory=dict)
    partitions: int | None = None
    float_delegated_nodes: int | None = None
    float_total_nodes: int | None = None


@dataclass(frozen=True)
class Size:
    float_bytes: int | None = None
    int8_bytes: int | None = None
    ratio: float | None = None


@dataclass(frozen=True)
class DeviceResult:
    name: str
    transport: str
    address: str | None = None
    runtime: str | None = None
    machine: str | None = None
    emulated: bool | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    accuracy: Accuracy = field(default_factory=Accuracy)
    outputs: tuple[OutputScore, ...] = ()
    worst_sqnr_db: float | None = None
    worst_slice_sqnr_db: float | None = None
    latency: Latency = field(default_factory=Latency)
    vs_local: dict[str, Any] | None = None  # bit-exactness against the local INT8 run
    note: str | None = None
    gates: tuple[GateResult, ...] = ()
    passed: bool | None = None

    @property
    def figures(self) -> Figures:
        return _figures(self, self.capabilities.scores_outputs)


@dataclass(frozen=True)
class Baseline:
    """A previous results file (the last release's) and how this run compares with it."""

    path: str
    int8_top1: float | None = None
    int8_p50_ms: float | None = None
    int8_bytes: int | None = None
    regression_pts: float | None = None  # top-1 points lost since the baseline (negative: gained)
    latency_regression_pct: float | None = None  # INT8 p50 growth, % (negative: faster)
    size_growth_pct: float | None = None  # model size growth, %

    @classmethod
    def compare(cls, path: str, previous: ValidationResult, accuracy: Accuracy, latency: Latency, size: Size) -> Baseline:
        def growth(now: float | None, before: float | None) -> float | None:
            return round(100 * (now / before - 1), 3) if now is not None and before else None

        before_top1 = previous.accuracy.int8_top1
        return cls(path, before_top1, previous.latency.int8_ms.p50, previous.size.int8_bytes,
                   round(100 * (before_top1 - accuracy.int8_top1), 3) if before_top1 is not None and accuracy.int8_top1 is not None else None,
                   growth(latency.int8_ms.p50, previous.latency.int8_ms.p50), growth(size.int8_bytes, previous.size.int8_bytes))


@dataclass(frozen=True)
class Pairing:
    inputs: str
    outputs: str


@dataclass(frozen=True)
class SourceCheck:
    """The float .tflite that INT8 is compared with, against the framework's own model (PyTorch):
    the conversion's error, apart from the quantization's."""

    reference: str
    samples: int
    outputs: tuple[OutputScore, ...] = ()
    worst_sqnr_db: float | None = None


@dataclass(frozen=True)
class ValidationResult:
    model: str
    reference: str
    passed: bool
    schema_version: str = SCHEMA_VERSION
    model_kind: str | None = None
    edgeq_version: str | None = None
    reference_tflite: str | None = None
    data: str | None = None
    pairing: Pairing | None = None
    preprocessing: dict[str, Any] | None = None
    size: Size = field(default_factory=Size)
    accuracy: Accuracy = field(default_factory=Accuracy)
    outputs: tuple[OutputScore, ...] = ()
    worst_sqnr_db: float | None = None
    worst_slice_sqnr_db: float | None = None
    latency: Latency = field(default_factory=Latency)
    warnings: tuple[str, ...] = ()
    conversion_search: dict[str, Any] | None = None
    per_layer: dict[str, Any] | None = None
    devices: tuple[DeviceResult, ...] = ()
    gates: tuple[GateResult, ...] = ()
    target: dict[str, Any] | None = None
    baseline: Baseline | None = None
    source_check: SourceCheck | None = None

    @property
    def figures(self) -> Figures:
        figures = _figures(self, True)
        if self.baseline is None:
            return figures
        b = self.baseline
        return replace(figures, regression_pts=b.regression_pts, latency_regression_pct=b.latency_regression_pct,
                       size_growth_pct=b.size_growth_pct)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> ValidationResult:
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected an object, got {type(data).__name__}")
        check_version(data, where)
        return from_json(cls, _upgraded(data), where)

    @classmethod
    def read(cls, path: str | Path) -> ValidationResult:
        """A results JSON file, or one clear line about why it cannot be used."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no such results file; write one with edgeq validate ... --json {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); write it again with edgeq validate --json") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
        if not isinstance(data, dict) or not all(k in data for k in ("model", "gates", "passed")):
            raise DataError(f"{path}: not an edgeq validate results file (write one with edgeq validate --json)")
        check_version(data, path.name)  # before the shape checks: a newer file is refused, not misread
        check(data, RESULTS, path.name)  # the sections other modules own
        return cls.from_json(data, path.name)

    @property
    def verdict(self) -> str:
        """PASS or FAIL on the gates given; without gates nothing was checked, and it says so."""
        if not self.passed:
            return "FAIL"
        return "PASS" if self.gates or any(d.gates for d in self.devices) else "NO GATES"

    @property
    def broken_outputs(self) -> tuple[OutputScore, ...]:
        return tuple(o for o in self.outputs if o.broken)

    def with_warnings(self, *more: str) -> ValidationResult:
        return replace(self, warnings=self.warnings + tuple(more))


def _figures(result: ValidationResult | DeviceResult, scores_outputs: bool) -> Figures:
    accuracy, latency = result.accuracy, result.latency
    return Figures(accuracy.top1_drop_pts, accuracy.agreement, result.worst_sqnr_db, latency.int8_ms.p50, latency.speedup,
                   scores_outputs, worst_slice_sqnr_db=result.worst_slice_sqnr_db,
                   exact=bool(result.outputs) and all(o.exact for o in result.outputs))


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A results file of schema 1.1 or earlier in today's shape: gates had only "passed" (no
    "n/a"), devices no capabilities (a benchmark_model runtime was latency only)."""
    def output(o: Any) -> Any:  # 1.2 stored an exact match as the sentinel SQNR 999.0
        return {**o, "sqnr_db": None, "exact": True} if isinstance(o, dict) and o.get("sqnr_db") == 999.0 else o

    def gate(g: Any) -> Any:
        if isinstance(g, dict) and "status" not in g and isinstance(g.get("passed"), bool):
            return {**g, "status": "passed" if g["passed"] else "failed"}
        return g

    def device(d: Any) -> Any:
        if not isinstance(d, dict) or "capabilities" in d:
            return d
        d = {**d, "capabilities": {"scores_outputs": d.get("runtime") != "benchmark_model", "latency": not d.get("emulated")}}
        return {**d, "gates": [gate(g) for g in d["gates"]]} if isinstance(d.get("gates"), list) else d

    def roles(holder: dict[str, Any]) -> dict[str, Any]:  # before 1.3 the agreement was an argmax over the first output
        outputs, accuracy = holder.get("outputs"), holder.get("accuracy")
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict) or not isinstance(accuracy, dict):
            return holder
        outputs = [output(o) for o in outputs]
        if accuracy.get("agreement") is not None and "output" not in accuracy and "role" not in outputs[0]:
            outputs[0] = {**outputs[0], "role": "classes", "role_from": "a results file before schema 1.3: its first output was scored as classes"}
            accuracy = {**accuracy, "output": outputs[0].get("name")}
        return {**holder, "outputs": outputs, "accuracy": accuracy}

    data = roles(dict(data))
    if isinstance(data.get("devices"), list):
        data["devices"] = [roles(d) if isinstance(d, dict) else d for d in data["devices"]]
    if isinstance(data.get("gates"), list):
        data["gates"] = [gate(g) for g in data["gates"]]
    if isinstance(data.get("devices"), list):
        data["devices"] = [device(d) for d in data["devices"]]
    return data
