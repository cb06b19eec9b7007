"""How to run one validation: the runtime here, the samples and their preprocessing, the output
roles, the gates, the devices and accelerators beside this machine, the per-layer analysis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypedDict, Unpack

from edgeq.core.errors import UsageError
from edgeq.data.samples import PreprocessingOverride
from edgeq.host.machine import cores
from edgeq.scoring.gates import BASELINE_GATES, Gates
from edgeq.scoring.roles import parse_feedback, roles_given
from edgeq.targets import TARGETS

GPU_PRECISIONS = ("fp16", "fp32")
DELEGATE_CHOICES = ("xnnpack", "none", "ref", "edgetpu")  # LiteRT's own three, and the Edge TPU as an external one


class ValidateSettings(TypedDict, total=False):
    """The API's keyword settings of a validation, one per command-line flag (a type checker checks
    each); gates by name (max_drop=..., min_sqnr=...) or as gates=. None is "not given"."""

    delegate: str
    delegate_library: str | None
    delegate_options: Mapping[str, str]
    threads: int
    warmup: int
    runs: int
    limit: int | None
    top_k: int
    seed: int
    preprocessing: PreprocessingOverride | Mapping[str, object]
    output_roles: Mapping[str, str]
    output_role: Sequence[str]  # KEY=ROLE strings, as the flag
    score_threshold: float
    signature: str
    gates: Gates | Mapping[str, float]
    max_drop: float | None
    min_agreement: float | None
    min_sqnr: float | None
    min_iou: float | None
    min_slice_sqnr: float | None
    max_latency_ms: float | None
    min_speedup: float | None
    max_regression_pts: float | None
    max_latency_regression: float | None
    max_size_growth: float | None
    per_layer: bool
    per_layer_samples: int
    target: str | None
    devices: Sequence[str]
    custom_objects: str | None
    trust_model: bool
    baseline: str | None
    cache: bool
    jobs: int | None
    cluster: str | None
    pending_store: str | None
    accelerators: Sequence[str]
    gpu_precision: str
    require_accelerated: bool
    feedback: Sequence[str] | Mapping[str, str]


@dataclass(frozen=True)
class ValidateOptions:
    delegate: str = "xnnpack"
    delegate_library: str | None = None
    delegate_options: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    warmup: int = 10
    runs: int = 100
    limit: int | None = None
    top_k: int = 5
    seed: int = 0
    preprocessing: PreprocessingOverride = field(default_factory=PreprocessingOverride)  # merged over the manifest's
    output_roles: dict[str, str] = field(default_factory=dict)  # output key -> classes | score | values
    score_threshold: float = 0.5  # a score output's decision threshold
    signature: str = "serving_default"
    gates: Gates = field(default_factory=Gates)
    per_layer: bool = False
    per_layer_samples: int = 32
    target: str | None = None  # edgetpu | nnapi | xnnpack: check the static prediction against the real thing
    devices: tuple[str, ...] = ()  # device profile names or paths: run the INT8 model there too
    custom_objects: str | None = None  # a Keras reference's custom classes (.py)
    trust_model: bool = False  # load a reference that holds code (edgeq.frameworks.trust)
    baseline: str | None = None  # a previous results JSON: the regression gates compare with it
    cache: bool = True  # reuse a Keras/SavedModel/PyTorch reference's float .tflite from the conversion cache
    jobs: int | None = None  # pairs of interpreters (INT8 and float) run concurrently; None: the cores. Same figures as 1
    cluster: str | None = None  # a Ray cluster's address (or `local`): the sample loop's invokes run there. Same figures
    pending_store: str | None = None  # --no-wait: fleet jobs are submitted, not waited for; what scoring them needs goes here
    accelerators: tuple[str, ...] = ()  # gpu | npu:VENDOR[:SOC]: run the model on LiteRT's accelerators here too
    gpu_precision: str = GPU_PRECISIONS[0]  # the GPU computes in fp16 unless told otherwise, as on phones
    require_accelerated: bool = False  # a gate: every op of each accelerator run ran there
    feedback: dict[str, str] = field(default_factory=dict)  # output key -> input key: streaming validation

    @classmethod
    def of(cls, **settings: Unpack[ValidateSettings]) -> ValidateOptions:
        """From the API's keyword settings: the command's names (output_role=["KEY=classes"] as the
        flag, or output_roles={...}); an unknown one is one UsageError line naming the known ones."""
        values: dict = {k: v for k, v in settings.items() if v is not None}
        values["output_roles"] = roles_given(values)
        limits = {k: values.pop(k) for k in [f.name for f in fields(Gates)] if k in values}
        if limits:
            if "gates" in values:
                raise UsageError("give the gates as gates=... or by name (min_sqnr=...), not both")
            values["gates"] = Gates(**limits)
        for name in ("devices", "accelerators"):
            if name in values:
                values[name] = tuple(values[name])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown validate option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.jobs is None:
            object.__setattr__(self, "jobs", cores())
        object.__setattr__(self, "feedback", parse_feedback(self.feedback))
        if self.delegate == "edgetpu":  # the Edge TPU is an external delegate: Coral's library, XNNPACK for the rest
            object.__setattr__(self, "delegate", "xnnpack")
            object.__setattr__(self, "delegate_library", self.delegate_library or "libedgetpu.so.1")
        if isinstance(self.preprocessing, dict):  # the API's preprocessing={"value_range": "-1,1"}
            object.__setattr__(self, "preprocessing", PreprocessingOverride(**self.preprocessing))
        if not isinstance(self.gates, Gates):  # the API's gates={"min_sqnr": 30}
            object.__setattr__(self, "gates", Gates.of(self.gates))
        needing = [g for g in BASELINE_GATES if g in self.gates.limits()]
        if needing and self.baseline is None:
            raise UsageError(f"--{needing[0].replace('_', '-')} compares with a previous release: pass --baseline PREVIOUS.json")
        if self.target is not None and self.target not in TARGETS:
            raise UsageError(f"--target {self.target!r}: use {', '.join(TARGETS)}")
        from edgeq.run.compiled_model import Accelerator

        for asked in self.accelerators:
            Accelerator.parse(asked, self.gpu_precision)  # a wrong one is a usage error before the run
        if self.require_accelerated and not self.accelerators:
            raise UsageError("--require-accelerated gates the --accelerator runs: add --accelerator gpu or npu:VENDOR")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0 or self.top_k < 1 or self.jobs < 1:
            raise UsageError("--threads, --runs, --top-k and --jobs must be at least 1, --warmup at least 0")
