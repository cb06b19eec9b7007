"""What `edgeq validate` found, as typed records: the results JSON is `to_json()` of them, and
`ValidationResult.from_json` reads one back (a CI artifact) with every value's type checked.

Field names are the JSON keys, so the contract of the results file is this module. Sections that
another module owns and renders as a whole (the conversion search, per-layer errors, the target
check) stay JSON objects here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgeq.errors import DataError
from edgeq.gates import Figures, GateResult
from edgeq.run.litert import Timings
from edgeq.run.runner import Capabilities
from edgeq.schema import SCHEMA_VERSION, check_version, from_json, to_json


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


@dataclass(frozen=True)
class OutputScore:
    name: str
    sqnr_db: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    reference_name: str | None = None


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
        return cls(p50=measured.p50, p90=measured.p90, p99=measured.p99, mean=measured.mean, std=measured.std,
                   samples=measured.samples_ms)


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
    latency: Latency = field(default_factory=Latency)
    vs_local: dict[str, Any] | None = None  # bit-exactness against the local INT8 run
    note: str | None = None
    gates: tuple[GateResult, ...] = ()
    passed: bool | None = None

    @property
    def figures(self) -> Figures:
        return _figures(self.accuracy, self.worst_sqnr_db, self.latency, self.capabilities.scores_outputs)


@dataclass(frozen=True)
class Pairing:
    inputs: str
    outputs: str


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
    latency: Latency = field(default_factory=Latency)
    warnings: tuple[str, ...] = ()
    conversion_search: dict[str, Any] | None = None
    per_layer: dict[str, Any] | None = None
    devices: tuple[DeviceResult, ...] = ()
    gates: tuple[GateResult, ...] = ()
    target: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None

    @property
    def figures(self) -> Figures:
        return _figures(self.accuracy, self.worst_sqnr_db, self.latency, True)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> ValidationResult:
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected an object, got {type(data).__name__}")
        check_version(data, where)
        return from_json(cls, _upgraded(data), where)

    def with_warnings(self, *more: str) -> ValidationResult:
        return replace(self, warnings=self.warnings + tuple(more))


def _figures(accuracy: Accuracy, worst_sqnr_db: float | None, latency: Latency, scores_outputs: bool) -> Figures:
    return Figures(accuracy.top1_drop_pts, accuracy.agreement, worst_sqnr_db, latency.int8_ms.p50, latency.speedup,
                   scores_outputs)


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A results file of schema 1.1 or earlier in today's shape: gates had only "passed" (no
    "n/a"), devices no capabilities (a benchmark_model runtime was latency only)."""
    def gate(g: Any) -> Any:
        if isinstance(g, dict) and "status" not in g and isinstance(g.get("passed"), bool):
            return {**g, "status": "passed" if g["passed"] else "failed"}
        return g

    def device(d: Any) -> Any:
        if not isinstance(d, dict) or "capabilities" in d:
            return d
        d = {**d, "capabilities": {"scores_outputs": d.get("runtime") != "benchmark_model", "latency": not d.get("emulated")}}
        return {**d, "gates": [gate(g) for g in d["gates"]]} if isinstance(d.get("gates"), list) else d

    data = dict(data)
    if isinstance(data.get("gates"), list):
        data["gates"] = [gate(g) for g in data["gates"]]
    if isinstance(data.get("devices"), list):
        data["devices"] = [device(d) for d in data["devices"]]
    return data
