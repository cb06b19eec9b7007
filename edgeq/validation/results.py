"""What `edgeq validate` found, as typed records: the results JSON is `to_json()` of them, and
`ValidationResult.from_json` reads one back (a CI artifact) with every value's type checked.

Field names are the JSON keys, so the contract of the results file is this module. Sections that
another module owns and renders as a whole (the conversion search, per-layer errors, the target
check) stay JSON objects here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeq.core.errors import DataError
from edgeq.core.fileio import read_json
from edgeq.core.schema import SCHEMA_VERSION, check_version, from_json, to_json, upgraded_results
from edgeq.records.manifest import PerLayer, PreprocessingUsed, Search
from edgeq.run.protocol import AcceleratorUse, Capabilities, Percentiles
from edgeq.scoring.gates import Figures, GateResult
from edgeq.scoring.metrics import Accuracy, OutputScore
from edgeq.targets.edgetpu_toolchain import CompilerReport
from edgeq.validation.feedback import Streaming


@dataclass(frozen=True)
class Latency:
    delegate: str | None = None
    threads: int | None = None
    warmup: int | None = None
    runs: int | None = None
    int8_ms: Percentiles = field(default_factory=Percentiles)
    float_ms: Percentiles = field(default_factory=Percentiles)
    speedup: float | None = None  # float p50 / INT8 p50, on the same runner
    within_noise: bool | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    cpu_fallback_ops: dict[str, int] = field(default_factory=dict)
    partitions: int | None = None
    float_delegated_nodes: int | None = None
    float_total_nodes: int | None = None
    cpu: str | None = None  # a local timing's CPU, with its int8 dot-product instructions or their absence


@dataclass(frozen=True)
class Size:
    float_bytes: int | None = None
    int8_bytes: int | None = None
    ratio: float | None = None


@dataclass(frozen=True)
class OutputMatch:
    name: str
    elements: int
    mismatches: int
    max_lsb_diff: int | None = None  # integer outputs only: the largest gap in quantization steps
    max_abs_diff: float | None = None  # in real units (dequantized)
    sqnr_db: float | None = None  # the device's real outputs against the local run's; None when equal


@dataclass(frozen=True)
class BitExactness:
    """A device's raw INT8 outputs against the local run's, element by element."""

    bit_exact: bool
    mismatches: int
    max_lsb_diff: int = 0
    outputs_differing: tuple[str, ...] = ()
    outputs: tuple[OutputMatch, ...] = ()


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
    vs_local: BitExactness | None = None  # against the local INT8 run
    accelerator: AcceleratorUse | None = None  # a GPU/NPU run: what ran it, by the evidence
    note: str | None = None
    gates: tuple[GateResult, ...] = ()
    passed: bool | None = None
    error: str | None = None  # a fleet device whose run failed (an AI Hub job): why, in one line; nothing was measured
    pending: tuple[str, ...] = ()  # validate --no-wait: the INT8 and float jobs still to collect (--resume)

    @property
    def figures(self) -> Figures:
        return _figures(self, self.capabilities.scores_outputs, self.capabilities.latency)


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
        return cls(
            path,
            before_top1,
            previous.latency.int8_ms.p50,
            previous.size.int8_bytes,
            round(100 * (before_top1 - accuracy.int8_top1), 3)
            if before_top1 is not None and accuracy.int8_top1 is not None
            else None,
            growth(latency.int8_ms.p50, previous.latency.int8_ms.p50),
            growth(size.int8_bytes, previous.size.int8_bytes),
        )


@dataclass(frozen=True)
class PairedBy:
    """How validate paired the INT8 model's tensors with the reference's (edgeq.run.pairing): key, name, shape."""

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
class DelegateCheck:
    """XNNPACK: the nodes the real delegate took against the static prediction."""

    predicted_delegated: int = 0
    actual_delegated: int = 0
    predicted_kept: dict[str, int] = field(default_factory=dict)
    actual_kept: dict[str, int] = field(default_factory=dict)
    agrees: bool = False

    @classmethod
    def pending(cls) -> DelegateCheck:
        """To be filled in once the model ran on the delegate."""
        return cls()


@dataclass(frozen=True)
class TargetCheck:
    """--target: the static prediction (edgeq.targets' report, as its JSON), and what the real
    target said where it is on this machine (the Edge TPU compiler's report, the real delegate)."""

    name: str
    prediction: dict[str, Any]  # edgeq.targets.TargetReport.to_dict(), rendered by the targets' own terms
    compiler: CompilerReport | None = None  # with its comparison to the prediction
    ran_on_target: bool = False
    delegate_check: DelegateCheck | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from edgeq.targets import TargetReport

        TargetReport.from_dict(self.prediction)  # a section the renderers read: checked when the file is read

    def predicted_kept(self) -> tuple[dict[str, int], int]:
        """The op types the prediction leaves off the target, and the nodes it puts on it."""
        from edgeq.targets import TargetReport

        report = TargetReport.from_dict(self.prediction)
        return dict(Counter(f.type for f in report.ops if not f.on_target)), report.target_ops


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
    pairing: PairedBy | None = None
    preprocessing: PreprocessingUsed | None = None
    size: Size = field(default_factory=Size)
    accuracy: Accuracy = field(default_factory=Accuracy)
    outputs: tuple[OutputScore, ...] = ()
    worst_sqnr_db: float | None = None
    worst_slice_sqnr_db: float | None = None
    latency: Latency = field(default_factory=Latency)
    warnings: tuple[str, ...] = ()
    conversion_search: Search | None = None
    per_layer: PerLayer | None = None
    streaming: Streaming | None = None  # --feedback: each model fed its own state, step by step
    devices: tuple[DeviceResult, ...] = ()
    gates: tuple[GateResult, ...] = ()
    target: TargetCheck | None = None
    baseline: Baseline | None = None
    source_check: SourceCheck | None = None

    @property
    def figures(self) -> Figures:
        figures = _figures(self, True)
        if self.baseline is None:
            return figures
        b = self.baseline
        return replace(
            figures,
            regression_pts=b.regression_pts,
            latency_regression_pct=b.latency_regression_pct,
            size_growth_pct=b.size_growth_pct,
        )

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> ValidationResult:
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected an object, got {type(data).__name__}")
        check_version(data, where)
        return from_json(cls, upgraded_results(data), where)

    @classmethod
    def read(cls, path: str | Path) -> ValidationResult:
        """A results JSON file, or one clear line about why it cannot be used."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such results file; write one with edgeq validate ... --json {path}")
        data = read_json(path)
        if not isinstance(data, dict) or not all(k in data for k in ("model", "gates", "passed")):
            raise DataError(f"{path}: not an edgeq validate results file (write one with edgeq validate --json)")
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


def _figures(result: ValidationResult | DeviceResult, scores_outputs: bool, real_latency: bool = True) -> Figures:
    accuracy, latency = result.accuracy, result.latency
    return Figures(
        accuracy.top1_drop_pts,
        accuracy.agreement,
        result.worst_sqnr_db,
        latency.int8_ms.p50,
        latency.speedup,
        scores_outputs,
        worst_slice_sqnr_db=result.worst_slice_sqnr_db,
        exact=bool(result.outputs) and all(o.exact for o in result.outputs),
        real_latency=real_latency,
        worst_iou=min((o.iou for o in result.outputs if o.iou is not None), default=None),
    )
