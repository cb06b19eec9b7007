"""What a conversion found and did, as typed records: the manifest (`<model>.edgeq.json`) is
`to_json()` of a `Manifest`, and `Manifest.from_json` reads one back with every value's type
checked, after `edgeq.core.schema.upgraded_manifest` has brought an older file to today's shape.

Field names are the JSON keys: this module is the contract of the manifest, as
`edgeq.validation.results` is that of the results file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from edgeq.core.schema import SCHEMA_VERSION, from_json, to_json, upgraded_manifest
from edgeq.data.samples import Preprocessing
from edgeq.records.recipe import Recipe
from edgeq.tflite.summary import FloatOp, OpCount, SignatureInfo, TensorInfo, Weights


class StepKind(str, Enum):
    """What one evaluated candidate of the search quantized its activations to."""

    INT8 = "int8"
    INT16X8 = "int16x8"
    A16W8 = "a16w8"  # int8, with the layers `int16_layers` names at 16-bit activations


@dataclass(frozen=True)
class StepOutput:
    """One output's figures in one evaluated candidate."""

    name: str
    tensor: str | None = None
    role: str = "values"
    sqnr_db: float | None = None
    exact: bool = False
    agreement: float | None = None
    margin: float | None = None  # over the budget, >= 0 meets; None: exact, or no finite margin
    meets: bool = True


@dataclass(frozen=True)
class SearchStep:
    """One candidate the search (or `--calibration auto`) evaluated on --eval-data."""

    kind: StepKind
    k: int  # layers kept in float
    size_bytes: int
    meets: bool
    method: str | None = None  # the activation-range method this candidate tried (auto); None: the conversion's own
    phase: str | None = None
    float_layers: tuple[str, ...] = ()
    float_top1: float | None = None
    int8_top1: float | None = None
    top1_drop_pts: float | None = None
    agreement: float | None = None
    worst_sqnr_db: float | None = None
    exact: bool = False
    outputs: tuple[StepOutput, ...] = ()
    missed: tuple[str, ...] = ()
    quality: float | None = None  # the worst output's margin: orders candidates that all miss
    seconds: float | None = None
    int16_layers: tuple[str, ...] = ()  # a16w8: the layers at 16-bit activations


@dataclass(frozen=True)
class ChosenLayer:
    node: str
    op_type: str
    position: int


@dataclass(frozen=True)
class Search:
    """The accuracy-budget search: every candidate evaluated, and the one chosen."""

    budget: dict[str, float | None]
    eval_samples: int
    layers_considered: int
    max_evaluations: int
    evaluations: int
    steps: tuple[SearchStep, ...]
    chosen: SearchStep
    met: bool
    eval_data: str | None = None
    int8_evaluations: int | None = None
    strategy: str | None = None
    graph_layers: int | None = None  # None: a search before the output-aware one (ranked layers)
    missed_outputs: tuple[str, ...] = ()
    seconds: float | None = None
    chosen_layers: tuple[ChosenLayer, ...] = ()
    notes: tuple[str, ...] = ()
    held_back: SearchStep | None = None  # the chosen model on the held-back samples; `met` needs it to meet there too
    held_back_samples: int = 0  # --eval-data samples the search did not choose on (eval_samples: those it did)


@dataclass(frozen=True)
class RangeChange:
    """One tensor whose activation range the method moved away from min/max."""

    tensor: str
    minmax: tuple[float, float]
    chosen: tuple[float, float]
    range_ratio: float
    clipped_fraction: float | None = None


@dataclass(frozen=True)
class MethodTry:
    """One method `--calibration auto` tried, by its worst output and each output."""

    method: str
    worst_sqnr_db: float | None = None
    outputs: dict[str, float | None] = field(default_factory=dict)
    meets: bool | None = None
    chosen: bool = False
    gain: str | None = None  # without a budget, the best method's gain over minmax with its interval (edgeq.scoring.held_back)


@dataclass(frozen=True)
class Calibration:
    """What the calibration samples were, and which activation ranges they gave."""

    samples: int
    requested: int
    data: str | None = None
    fingerprint: str | None = None
    jobs: int = 1
    observed_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    trained: str | None = None  # quantization-aware training gave the ranges: how ("trained ranges (QAT)", ...)
    ranges: tuple[RangeChange, ...] = ()  # where the recipe's method differs from min/max
    auto: tuple[MethodTry, ...] = ()  # --calibration auto: each method tried


@dataclass(frozen=True)
class KeepFloat:
    """--keep-float as asked, and the nodes and op types it (and the search) kept in float."""

    requested: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    per_name: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One --optimize latency candidate: op types kept in float, timed against float."""

    name: str
    keep_ops: tuple[str, ...]
    int8_p50_ms: float
    speedup: float  # float p50 / this candidate's p50
    within_noise: bool
    delegated_nodes: int
    total_nodes: int
    partitions: int
    off_delegate: dict[str, int]
    worst_sqnr_db: float | None
    meets: bool | None
    size_bytes: int
    beats_plain: bool | None = None  # faster than the model as converted, beyond the run-to-run spread
    rewrites: tuple[str, ...] = ()  # graph rewrites (edgeq.tflite.rewrites) instead of float ops


LATENCY_SAMPLES = 16  # calibration samples the latency check times (the first) and, without a budget, scores


@dataclass(frozen=True)
class LatencyCheck:
    """INT8 against float where the conversion ran; with --optimize latency, every candidate."""

    delegate: str
    threads: int
    float_p50_ms: float
    int8_p50_ms: float | None = None
    speedup: float | None = None  # float p50 / INT8 p50
    within_noise: bool = False
    off_delegate: dict[str, int] = field(default_factory=dict)
    partitions: int | None = None
    rounds: int | None = None
    runs: int | None = None
    chosen: str | None = None
    keep_ops: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()  # the chosen candidate's graph rewrites
    candidates: tuple[Candidate, ...] = ()
    faster_than_float: bool | None = None
    note: str | None = None
    judged_by: str | None = None  # --optimize latency: "timings on ..." or "XNNPACK coverage (...)", and why
    cpu: str | None = None  # the CPU the timings were measured on, and its int8 dot-product instructions

    @property
    def optimized(self) -> bool:
        return bool(self.candidates)


@dataclass(frozen=True)
class Source:
    path: str
    kind: str  # keras | saved_model | tflite | pytorch | onnx
    sha256: str | None = None
    bytes: int | None = None
    rewrites: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreprocessingUsed:
    """The preprocessing the samples went through, and where each setting came from
    (edgeq.data.normalization.resolve: flag, manifest, what the model states, default)."""

    settings: Preprocessing = field(default_factory=Preprocessing)
    origins: dict[str, str] = field(default_factory=dict)
    images: bool = True  # False: the samples were .npy/.npz arrays, fed as given (the settings did not apply)

    @property
    def normalizes(self) -> bool:
        """A mean/std normalization rather than a value range."""
        return self.settings.mean is not None


@dataclass(frozen=True)
class ModelFile:
    sha256: str
    bytes: int
    invoked_on: str | None = None


@dataclass(frozen=True)
class Sizes:
    float_bytes: int | None
    model_bytes: int
    ratio: float | None = None
    float_is: str = "float .tflite"
    source_bytes: int | None = None
    source_ratio: float | None = None


@dataclass(frozen=True)
class Embedded:
    """The TFLite Model Metadata embedded in the model."""

    kind: str
    name: str
    version: str | None = None
    labels: int = 0
    labels_file: str | None = None


@dataclass(frozen=True)
class CacheUse:
    conversion: str  # hit | miss | off
    calibration: str  # hit | miss | off | not reusable | not needed
    folder: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """How the conversion was run, beside its recipe: what was asked, not what decides the bytes."""

    calibration: str = "minmax"  # as asked: `auto` here, the method it settled on in the recipe
    custom_objects: str | None = None
    trust_model: bool = False
    input_shapes: tuple[str, ...] = ()
    jobs: int | None = None
    targets: tuple[str, ...] = ()
    eval_data: str | None = None
    budget: dict[str, float | None] | None = None
    max_float_layers: int | None = None
    search_seconds: float | None = None
    allow_int16x8: bool = False
    cache: bool = True
    optimize: str | None = None
    device: str | None = None
    output_roles: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerError:
    """One layer of the per-layer debugger's ranking: INT8 against float at its output."""

    rank: int
    op_type: str
    tensor_name: str
    scale: float
    zero_point: int
    sqnr_db: float | None = None
    rmse: float | None = None
    mean_error: float | None = None
    max_abs_error: float | None = None
    rmse_lsb: float | None = None  # in units of the tensor's scale
    max_abs_error_lsb: float | None = None
    range_ratio: float | None = None  # the range --calibration chose over min/max's, where it chose one
    clipped_fraction: float | None = None


@dataclass(frozen=True)
class PerLayer:
    ranked_by: str
    calibration: str  # which samples calibrated the debug model
    debug_samples: int
    layers: tuple[LayerError, ...] = ()
    calibration_ranges: tuple[RangeChange, ...] = ()
    method: str | None = None
    # the recipe's model rebuilt beside the debug model: its op census against the file analysed
    # (the float layers the search or --optimize latency chose are part of the recipe); None: not checked
    matches_model: bool | None = None


@dataclass(frozen=True)
class LayerRefined:
    """--refine rounding, one layer: its output against the float layer's on its calibration
    positions, as SQNR (dB), and that error split by cause."""

    name: str
    kind: str
    before_db: float  # as converted: int8 weights on the INT8 model's inputs
    after_db: float  # refined
    inputs_only_db: float  # the float weights on the INT8 model's inputs: what activation quantization costs
    weights_only_db: float  # the converter's int8 weights on the float inputs: what weight rounding costs
    rows: int  # calibration positions measured


@dataclass(frozen=True)
class Refinement:
    """--refine: the weight-rounding shift taken out of the int32 biases (bias, edgeq.conversion.refinement.bias),
    or the int8 weights rounded to fit the float layer's output (rounding, edgeq.conversion.refinement.rounding)."""

    method: str  # bias | rounding: what the file carries; none: auto kept the model as converted
    layers: int  # layers refined
    samples: int  # calibration samples the refinement was measured on
    largest_shift: float  # bias: the largest corrected mean shift, in steps of the layer's output scale
    skipped: tuple[str, ...] = ()
    judged: str | None = None  # --refine auto: what it compared, and what it kept
    stages: int = 0  # rounding: runs of the INT8 model that gave the next layers their (refined) inputs
    per_layer: tuple[LayerRefined, ...] = ()  # rounding: each layer before and after, in graph order


@dataclass(frozen=True)
class NpuCompile:
    """`edgeq compile --npu`: the file compiled ahead of time for an NPU, from which INT8 file, and
    what the vendor's compiler took."""

    target: str  # vendor:SoC, as asked
    source: str  # the INT8 file it was compiled from (its name, beside this one) ...
    source_sha256: str  # ... and its sha256: validate runs that file on the CPU to compare with
    stamp: str | None  # the vendor and SoC the file's LiteRtStamp names
    graph_backend: str | None  # Intel: the OpenVINO device the bytecode targets
    ops_offloaded: int
    ops_total: int
    partitions: int
    ops_on_cpu: dict[str, int] = field(default_factory=dict)
    report: str = ""  # the compiler's own partition report
    note: str | None = None


@dataclass(frozen=True)
class Manifest:
    source: Source
    recipe: Recipe
    sizes: Sizes
    schema_version: str = SCHEMA_VERSION
    edgeq_version: str | None = None
    tensorflow_version: str | None = None
    keras_version: str | None = None
    litert_version: str | None = None
    preprocessing: PreprocessingUsed | None = None
    output: str | None = None
    model: ModelFile | None = None
    options: RunOptions = field(default_factory=RunOptions)
    calibration: Calibration | None = None
    signatures: tuple[SignatureInfo, ...] = ()
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    op_census: dict[str, OpCount] = field(default_factory=dict)
    ops_total: int = 0
    ops_int8: int = 0
    weights: Weights = field(default_factory=Weights)
    float_ops: tuple[FloatOp, ...] = ()
    float_tensors: tuple[str, ...] = ()
    keep_float: KeepFloat = field(default_factory=KeepFloat)
    metadata: Embedded | None = None
    search: Search | None = None
    latency: LatencyCheck | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # edgeq.targets.TargetReport.summary() by target
    warnings: tuple[str, ...] = ()
    cache: CacheUse | None = None
    timings: dict[str, float] = field(default_factory=dict)
    npu: NpuCompile | None = None
    refinement: Refinement | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        return from_json(cls, upgraded_manifest(data, where), where)
