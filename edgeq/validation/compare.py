"""edgeq validate: run the INT8 model where it will run and compare it with the float model.

The result is a ValidationResult (typed records; its JSON is the contract with the reporter), built
here and rendered elsewhere. Figures that do not apply are None, never missing.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import edgeq
from edgeq.conversion.pytorch import PT2_SUFFIX
from edgeq.data.samples import InputSpec, Preprocessing, open_samples
from edgeq.errors import DataError, ModelError, UsageError
from edgeq.fileio import sha256_of, size_of
from edgeq.gates import BASELINE_GATES, check_names, evaluate, passed
from edgeq.metrics import Scorer, speedup
from edgeq.roles import Role, decide_roles
from edgeq.native import captured_native_stderr
from edgeq.progress import report
from edgeq.run.litert import LiteRTRunner, within_noise
from edgeq.run.pairing import pair
from edgeq.schema import NUM, SEARCH, mapping, optional
from edgeq.tflite.manifest import (
    Recipe,
    manifest_mismatch,
    manifest_part,
    read_manifest,
)
from edgeq.tflite.metadata import read_metadata, stated_normalization
from edgeq.tflite.summary import summarize
from edgeq.validation.streaming import Spill, paired_runs
from edgeq.validation.results import (
    Accuracy,
    Baseline,
    DeviceResult,
    Latency,
    OutputScore,
    Pairing,
    Size,
    SourceCheck,
    Timing,
    ValidationResult,
)

log = logging.getLogger(__name__)

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
    preprocessing: dict[str, Any] = field(default_factory=dict)  # given fields, merged over the manifest's
    output_roles: dict[str, str] = field(default_factory=dict)  # output key -> classes | score | values
    score_threshold: float = 0.5  # a score output's decision threshold
    signature: str = "serving_default"
    gates: dict[str, float] = field(default_factory=dict)
    per_layer: bool = False
    per_layer_samples: int = 32
    target: str | None = None  # edgetpu | nnapi | xnnpack: check the static prediction against the real thing
    devices: tuple[str, ...] = ()  # device profile names or paths: run the INT8 model there too
    custom_objects: str | None = None  # a Keras reference's custom classes (.py)
    trust_model: bool = False  # let Keras run a Keras reference's Lambda code
    baseline: str | None = None  # a previous results JSON: the regression gates compare with it
    cache: bool = True  # reuse a Keras/SavedModel/PyTorch reference's float .tflite from the conversion cache
    jobs: int = 1  # pairs of interpreters (INT8 and float) run concurrently on the samples; the figures equal --jobs 1

    def __post_init__(self) -> None:
        check_names(self.gates)
        needing = [g for g in BASELINE_GATES if g in self.gates]
        if needing and self.baseline is None:
            raise UsageError(f"--{needing[0].replace('_', '-')} compares with a previous release: pass --baseline PREVIOUS.json")
        if self.target is not None and self.target not in ("edgetpu", "nnapi", "xnnpack"):
            raise UsageError(f"--target {self.target!r}: use edgetpu, nnapi or xnnpack")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0 or self.top_k < 1 or self.jobs < 1:
            raise UsageError("--threads, --runs, --top-k and --jobs must be at least 1, --warmup at least 0")


def validate(model: str | Path, reference: str | Path, data: str | Path, options: ValidateOptions | None = None,
             **values: Any) -> ValidationResult:
    """Compare `model` with `reference` on `data` (progress goes to edgeq.progress listeners)."""
    options = options or ValidateOptions(**values)
    previous = ValidationResult.read(options.baseline) if options.baseline else None  # a bad file fails before the run
    model, reference = Path(model), Path(reference)
    int8 = LiteRTRunner(model, options.delegate, options.threads, options.delegate_library, options.delegate_options)
    with tempfile.TemporaryDirectory(prefix="edgeq-ref-") as scratch:
        target, int8 = _target(model, int8, options, Path(scratch)) if options.target else (None, int8)
        float_path, float_note = _float_tflite(reference, int8, options, Path(scratch))
        result = _compare(model, reference, data, options, int8, float_path, float_note, previous, Path(scratch))
        if reference.suffix.lower() == PT2_SUFFIX:
            result = replace(result, source_check=_pytorch_check(model, reference, float_path, data, options, int8))
    if target is not None:
        if target.get("delegate_check") is not None:
            target["delegate_check"] = _delegate_check(target, result.latency)
        result = replace(result.with_warnings(*target["notes"]), target=target)
    return result


def _target(model: Path, int8: LiteRTRunner, options: ValidateOptions, scratch: Path) -> tuple[dict[str, Any], LiteRTRunner]:
    """The static prediction for --target, and what the real target says where it is here.

    Edge TPU: compile with edgetpu_compiler when it is on PATH and compare its operation report;
    run the compiled model through libedgetpu.so.1 when that loads. Nothing is claimed to have
    run on hardware that did not.
    """
    from edgeq.targets import check_target
    from edgeq.targets import edgetpu_toolchain as edgetpu

    prediction = check_target(int8.model, options.target).to_dict()
    section: dict[str, Any] = {"name": options.target, "prediction": prediction, "compiler": None,
                               "ran_on_target": False, "delegate_check": None, "notes": []}
    if options.target == "xnnpack":
        section["delegate_check"] = {} if int8.delegate == "xnnpack" else None
        section["ran_on_target"] = int8.delegate == "xnnpack"
        return section, int8
    if options.target == "nnapi":
        section["notes"].append("NNAPI runs only on Android: this is the static prediction; validate on a phone with --device")
        return section, int8
    compiled = None
    if shutil.which(edgetpu.COMPILER):
        report, compiled = edgetpu.compile_model(model, scratch)
        section["compiler"] = {**report.to_dict(), "comparison": edgetpu.compare(prediction, report)}
    else:
        section["notes"].append(f"{edgetpu.COMPILER} is not on PATH: the model was not compiled; the Edge TPU figures are the static prediction")
    why_not = edgetpu.library_loads()
    if why_not is not None:
        section["notes"].append(f"{edgetpu.LIBRARY} cannot be loaded ({why_not}): nothing ran on an Edge TPU; latency and outputs are from {int8.delegate} on this CPU")
    elif compiled is not None:
        int8 = LiteRTRunner(compiled, threads=options.threads, delegate_library=edgetpu.LIBRARY, delegate_options=options.delegate_options)
        section["ran_on_target"] = True
    else:
        section["notes"].append(f"{edgetpu.LIBRARY} loads but there is no compiled model to run on it")
    return section, int8


def _delegate_check(target: dict[str, Any], latency: Latency) -> dict[str, Any]:
    """XNNPACK: the nodes the real delegate took against the prediction."""
    predicted = target["prediction"]
    actual_kept = latency.cpu_fallback_ops
    predicted_kept = dict(Counter(f["type"] for f in predicted["ops"] if not f["on_target"]))
    return {"predicted_delegated": predicted["target_ops"], "actual_delegated": latency.delegated_nodes,
            "predicted_kept": predicted_kept, "actual_kept": actual_kept,
            "agrees": predicted_kept == actual_kept and predicted["target_ops"] == latency.delegated_nodes}


def _compare(model: Path, reference: Path, data, options: ValidateOptions, int8: LiteRTRunner,
             float_path: Path, float_note: str, previous: ValidationResult | None, scratch: Path) -> ValidationResult:
    ref = LiteRTRunner(float_path, options.delegate, options.threads, options.delegate_library, options.delegate_options)
    same_source = _same_source(model, reference)
    inputs = pair("inputs", int8.input_ports, ref.input_ports, same_source)
    outputs = pair("outputs", int8.output_ports, ref.output_ports, same_source)
    specs = _specs(int8)
    to_reference = [0] * len(specs)  # the reference's feeds in its own input order
    for i, j in enumerate(inputs.order):
        to_reference[j] = i

    pre, sources = preprocessing_for(model, options, int8)
    metadata = read_metadata(int8.model.data)
    labels_from = metadata.labels if metadata is not None else None
    samples = open_samples(data, specs, pre, options.limit, options.seed, labels_from)
    labels = samples.labels
    names = [p.label for p in int8.output_ports]
    roles = decide_roles(int8.output_facts(), options.output_roles, len(samples.class_names) if samples.class_names else None)
    _check_gates_have_classes(options.gates, roles)
    headline = _headline(roles, [p.shape for p in int8.output_ports], len(samples.class_names or []))
    scorer = Scorer(names, [r.role for r in roles], options.top_k, headline, options.score_threshold)
    kept = Spill(scratch, len(samples)) if options.devices else None  # for --device runs: on disk, not in memory
    first = None
    low, high = [float("inf")] * len(specs), [float("-inf")] * len(specs)
    for i, (feeds, model_feeds, raw, want) in enumerate(paired_runs(samples, int8, ref, to_reference, outputs.order, options.jobs)):
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
    first_reference = [first[k] for k in to_reference]

    int8_latency = int8.time(first, options.warmup, options.runs)
    float_latency = ref.time(first_reference, options.warmup, options.runs)
    scores = scorer.result()
    kind = summarize(int8.model).precision
    float_bytes = size_of(float_path)
    latency = Latency(
        delegate=int8.delegate, threads=options.threads, warmup=options.warmup, runs=options.runs,
        int8_ms=Timing.of(int8_latency), float_ms=Timing.of(float_latency),
        speedup=speedup(float_latency.p50, int8_latency.p50), within_noise=within_noise(int8_latency, float_latency),
        delegated_nodes=int8.delegated_nodes, total_nodes=int8.total_nodes, cpu_fallback_ops=int8.kept_ops,
        partitions=int8.partitions, float_delegated_nodes=ref.delegated_nodes, float_total_nodes=ref.total_nodes)
    warnings: list[str] = []
    if options.delegate == "xnnpack" and not options.delegate_library and int8.delegated_nodes == 0:
        warnings.append(
            f"XNNPACK was asked for but took none of the {kind} model's nodes: its latency is that of LiteRT's built-in "
            f"kernels (measured {latency.speedup or 0:.2f}x the float model's speed)"
        )
    slower = slower_than_float(latency, kind)
    if slower:
        warnings.append(slower)
    warnings += _range_warnings(model, specs, low, high)
    search = manifest_part(model, "search", SEARCH, warnings)
    mismatch = manifest_mismatch(int8.model)
    if mismatch:
        warnings.append(mismatch)
    devices = _on_devices(model, float_path, int8, ref, kept, first_reference, labels, scorer, options) if options.devices else []
    devices = [replace(d, gates=tuple(g), passed=passed(g)) for d in devices for g in [evaluate(options.gates, d.figures)]]
    result = ValidationResult(
        model=str(model), reference=str(reference), passed=False, model_kind=kind, edgeq_version=edgeq.__version__,
        reference_tflite=float_note, data=samples.describe(), pairing=Pairing(inputs.method, outputs.method),
        preprocessing={"used": pre.describe(), "from": sources},
        size=Size(float_bytes, int8.model.size, round(int8.model.size / float_bytes, 4)),
        accuracy=Accuracy(**scores["accuracy"]),
        outputs=tuple(OutputScore.of(o, r.evidence, ref.output_ports[j].label) for o, r, j in zip(scores["outputs"], roles, outputs.order)),
        worst_sqnr_db=scores["worst_sqnr_db"], worst_slice_sqnr_db=scores["worst_slice_sqnr_db"], latency=latency, warnings=tuple(warnings), conversion_search=search,
        per_layer=_per_layer(model, reference, data, specs, options) if options.per_layer else None, devices=tuple(devices))
    if previous is not None:
        result = replace(result, baseline=Baseline.compare(str(options.baseline), previous, result.accuracy, result.latency, result.size))
    local = evaluate(options.gates, result.figures)
    return replace(result, gates=tuple(local), passed=passed(local) and all(d.passed for d in devices))


def _on_devices(model: Path, float_path: Path, int8: LiteRTRunner, ref: LiteRTRunner, kept: Spill,
                first: list, labels, scorer: Scorer, options: ValidateOptions) -> list[DeviceResult]:
    from edgeq.run.devices import load_profile
    from edgeq.run.runner import runner_for
    from edgeq.validation.devices import LocalRun, validate_on_devices

    local = LocalRun(kept.stacked("inputs"), kept.stacked("int8_raw"), kept.stacked("float"), ref.quantize_inputs(first),
                     labels, scorer.roles, scorer.headline, options.score_threshold)
    runners = [runner_for(load_profile(d)) for d in options.devices]
    return validate_on_devices(runners, model, float_path, int8, ref, local, options.warmup, options.runs, options.top_k)


SOURCE_CHECK_SAMPLES = 64


def _pytorch_check(model: Path, reference: Path, float_path: Path, data, options: ValidateOptions,
                   int8: LiteRTRunner) -> SourceCheck:
    """The float .tflite against PyTorch itself on the first samples: the conversion's own error."""
    from edgeq.conversion.isolation import run_isolated
    from edgeq.conversion.pytorch import run_program

    ref = LiteRTRunner(float_path, options.delegate, options.threads)
    pre, _ = preprocessing_for(model, options, int8)
    specs = [InputSpec(p.label, p.shape) for p in ref.input_ports]
    samples = list(open_samples(data, specs, pre, min(options.limit or SOURCE_CHECK_SAMPLES, SOURCE_CHECK_SAMPLES), options.seed))
    with captured_native_stderr():
        torch_outputs = run_isolated(run_program, reference, samples, _channels_last(model), what="PyTorch")
    names = [p.label for p in ref.output_ports]
    scorer = Scorer(names, ["values"] * len(names))
    for sample, want in zip(samples, torch_outputs):
        scorer.add([w.reshape(p.shape) for w, p in zip(want, ref.output_ports)], ref.run(sample), None)
    scores = scorer.result()
    return SourceCheck(f"PyTorch ({reference.name})", len(samples), tuple(OutputScore.of(o) for o in scores["outputs"]),
                       scores["worst_sqnr_db"])


def _channels_last(model: Path) -> bool:
    recipe = _recipe(model)
    return bool(recipe and recipe.channels_last)


def _per_layer(model: Path, reference: Path, data, specs: list[InputSpec], options: ValidateOptions) -> dict[str, Any]:
    from edgeq.conversion.debugger import per_layer_errors

    pre, _ = preprocessing_for(model, options)
    samples = list(open_samples(data, specs, pre, options.per_layer_samples, options.seed))
    return per_layer_errors(model, reference, samples, specs, options.signature, options.custom_objects, options.trust_model)


def _range_warnings(model: Path, specs: list[InputSpec], low: list[float], high: list[float]) -> list[str]:
    """Validation data on another scale than the calibration data (e.g. 0..255 against 0..1)."""
    calibration = manifest_part(model, "calibration", {"observed_range": optional(mapping([NUM]))}, [])
    seen = (calibration or {}).get("observed_range") or {}
    found = []
    for spec, lo, hi in zip(specs, low, high):
        ref = seen.get(spec.name)
        if not ref or len(ref) != 2:
            continue
        span = max(ref[1] - ref[0], 1e-6)
        if lo < ref[0] - 0.5 * span or hi > ref[1] + 0.5 * span:
            found.append(f"input '{spec.name}' spans [{lo:.4g}, {hi:.4g}] here but [{ref[0]:.4g}, {ref[1]:.4g}] in the "
                         "calibration data: check --range/--mean/--std")
    return found


REMEDIES = {
    "HARD_SWISH": "XNNPACK's delegate takes HARD_SWISH in float only (its VisitHardSwishNode checks for float "
                  "tensors; not a matter of quantization parameters): keep it in float with --mode int8-fallback "
                  "--keep-float HARD_SWISH, or use a ReLU6 variant of the model",
    "SOFTMAX": "an int8 SOFTMAX runs on built-in kernels; it is cheap unless the tensor is large",
}


def slower_than_float(latency: Latency, kind: str) -> str | None:
    """Why the quantized model ran slower than float on this delegate, and what may help."""
    speedup = latency.speedup
    if speedup is None or speedup >= 1 or latency.within_noise:
        return None
    fell = latency.cpu_fallback_ops
    why = (f"{sum(fell.values())} op(s) fell off {latency.delegate} ({', '.join(f'{k} x{v}' for k, v in fell.items())}), "
           f"splitting it into {latency.partitions} partition(s)") if fell else f"{latency.delegate} took every op"
    remedies = [REMEDIES[op] for op in fell if op in REMEDIES]
    if kind == "int16x8":
        remedies.append("int16x8 runs on LiteRT's built-in kernels only; int8 with a few float layers may be faster")
    if fell and kind != "int16x8":
        remedies.insert(0, "reconvert with edgeq convert ... --optimize latency, which times keeping those op types in "
                           "float against float and writes the fastest model that keeps your accuracy budget")
    return (f"{kind} ran at {speedup:.2f}x the float model's speed on {latency.delegate} (slower): {why}"
            + (f"; {'; '.join(remedies)}" if remedies else ""))


def _headline(roles: list[Role], shapes: list[tuple[int, ...]], class_count: int) -> int | None:
    """The classes output the headline accuracy is about: the one with as many values as the
    labelled classes, else the first."""
    classes = [i for i, r in enumerate(roles) if r.role == "classes"]
    counted = [i for i in classes if math.prod(shapes[i]) == class_count]
    return (counted or classes or [None])[0]


def _check_gates_have_classes(gates: dict[str, float], roles: list[Role]) -> None:
    needing = [g for g in ("max_drop", "min_agreement", "max_regression_pts") if g in gates]
    if needing and not any(r.role == "classes" for r in roles):
        evidence = "; ".join(f"{r.evidence}" for r in roles[:3])
        raise UsageError(f"--{needing[0].replace('_', '-')} judges a classes output, and this model has none ({evidence}); "
                         "gate with --min-sqnr/--min-slice-sqnr, or name one with --output-role KEY=classes")


def _specs(runner: LiteRTRunner) -> list[InputSpec]:
    """The model's inputs, named by signature key where it has one (the keys of a .npz)."""
    return [InputSpec(p.label, p.shape) for p in runner.input_ports]


def _same_source(model: Path, reference: Path) -> bool:
    """Whether `reference` is the very file the model's manifest says it was converted from."""
    source = read_manifest(model).get("source")
    if not isinstance(source, dict) or not reference.exists():
        return False
    try:
        return source.get("sha256") == sha256_of(reference)
    except OSError:
        return False


def preprocessing_for(model: Path, options: ValidateOptions, int8: LiteRTRunner | None = None) -> tuple[Preprocessing, dict[str, str]]:
    """The flags given to validate merged over the manifest's preprocessing (else the normalization
    the model's own metadata states), field by field, with each field's origin."""
    manifest = _manifest_preprocessing(model)
    if manifest is not None:
        merged, sources = manifest.merged(options.preprocessing)
        return merged, {k: "flag" if v == "given" else "manifest" for k, v in sources.items()}
    stated = stated_normalization(read_metadata(int8.model.data)) if int8 is not None else None
    merged, sources = (stated or Preprocessing()).merged(options.preprocessing)
    from_model = ("mean", "std") if stated is not None else ()
    return merged, {k: "flag" if v == "given" else "model metadata" if k in from_model else "default" for k, v in sources.items()}


def signature_of(model: Path, asked: str) -> str:
    """The signature the model was converted from (its manifest's recipe), else the one asked for."""
    recipe = _recipe(model)
    return recipe.signatures[0] if recipe is not None and recipe.signatures != ("all",) else asked


def _manifest_preprocessing(model: Path) -> Preprocessing | None:
    recipe = _recipe(model)
    return recipe.preprocessing if recipe is not None else None


def _recipe(model: Path) -> Recipe | None:
    """The manifest's recipe; a malformed one is a warning, and validation goes on without it."""
    try:
        return Recipe.from_manifest(model)
    except DataError as exc:
        log.warning("the manifest's recipe is not usable (%s); using the defaults", exc)
        return None


def _float_tflite(reference: Path, int8: LiteRTRunner, options: ValidateOptions, scratch: Path) -> tuple[Path, str]:
    """The float model as a .tflite, so both run in the same runtime on the same delegate.

    A Keras/SavedModel reference is converted to float TFLite (TensorFlow is imported only here).
    """
    if not reference.exists():
        raise ModelError(f"{reference}: no such reference model; pass the float .tflite, .keras/.h5 or SavedModel")
    if reference.suffix == ".tflite":
        return reference, "given"
    cache, key = None, None
    if options.cache:
        from edgeq.conversion.cache import Cache, cache_key

        cache = Cache.open()
        key = cache_key({"reference": sha256_of(reference), "suffix": reference.suffix.lower(), "signature": options.signature,
                         "inputs": [(p.label, p.shape) for p in int8.input_ports], "channels_last": _channels_last(int8.path),
                         "custom_objects": sha256_of(Path(options.custom_objects)) if options.custom_objects else None,
                         "trust_model": options.trust_model})
        entry = cache.get("reference", key)
        if entry is not None:
            path = scratch / (reference.stem + "_float.tflite")
            path.write_bytes(entry.blobs["model"])
            return path, entry.header["note"] + " (kept in the conversion cache by an earlier run)"
    path, note = _converted_reference(reference, int8, options, scratch)
    if cache is not None:
        cache.put("reference", key, {"note": note}, {"model": path.read_bytes()})
    return path, note


def _converted_reference(reference: Path, int8: LiteRTRunner, options: ValidateOptions, scratch: Path) -> tuple[Path, str]:
    if reference.suffix.lower() == PT2_SUFFIX:
        from edgeq.conversion.isolation import run_isolated
        from edgeq.conversion.pytorch import require_torch, to_float_tflite, versions

        require_torch(f"a PyTorch reference ({reference.name})")
        path = scratch / (reference.stem + "_float.tflite")
        with captured_native_stderr():  # torch and litert-torch's own start-up chatter
            path.write_bytes(run_isolated(to_float_tflite, reference, _channels_last(int8.path), what="litert-torch"))
        return path, f"converted from {reference.name} to float TFLite by litert-torch ({versions()})"
    from edgeq.conversion.source import KerasCode, load_source, require_tensorflow

    require_tensorflow(f"a {'SavedModel' if reference.is_dir() else 'Keras'} reference ({reference.name})")
    shapes = [f"{p.label}=" + ",".join(map(str, p.shape)) for p in int8.input_ports]
    with captured_native_stderr():
        source = load_source(reference, (signature_of(int8.path, options.signature),), shapes if len(shapes) > 1 else [shapes[0].split("=", 1)[1]],
                             KerasCode(options.custom_objects, options.trust_model))
        data = source.make_converter().convert()
    path = scratch / (reference.stem + "_float.tflite")
    path.write_bytes(data)
    return path, f"converted from {reference.name} to float TFLite"
