"""edgeq convert: a float Keras/SavedModel model plus real samples in, a quantized .tflite out.

Full-integer modes run TensorFlow's own two steps separately: calibrate (the converter with
`_experimental_calibrate_only`), then quantize (`mlir_quantize`, exactly as the converter calls
it). Splitting them lets edgeq keep chosen layers in float and audit the model in between.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import edgeq
from edgeq.conversion.cache import Cache, versions_installed
from edgeq.conversion.calibrated import Calibrated, cache_keys
from edgeq.conversion.calibration import ParallelCalibrator, default_jobs
from edgeq.conversion.isolation import ChildError, run_isolated, step
from edgeq.conversion.quantize import (
    calibrate,
    keyed,
    not_kept,
    one_step,
    quantize,
    resolve_keep_float,
    tf_type,
)
from edgeq.conversion.pytorch import PT2_SUFFIX, require_torch, to_float_tflite, versions
from edgeq.conversion.range_choice import choose_ranges
from edgeq.conversion.ranges import Method
from edgeq.conversion.search import Budget
from edgeq.conversion.source import KerasCode, first_line, has_fake_quant, load_source, require_tensorflow, stated_scaling
from edgeq.data.normalization import resolve
from edgeq.data.samples import (
    ArraySource,
    Audit,
    ImageFolder,
    InputSpec,
    Preprocessing,
    open_samples,
)
from edgeq.errors import ConversionError, DataError, EdgeqError, InternalError, ModelError, UsageError
from edgeq.fileio import (
    check_writable,
    json_bytes,
    sha256_of,
    size_of,
    write_files_atomically,
)
from edgeq.native import captured_native_stderr
from edgeq.progress import counted
from edgeq.schema import SCHEMA_VERSION
from edgeq.targets import TARGETS, check_target
from edgeq.tflite.manifest import IO_TYPES, Recipe
from edgeq.tflite.metadata import Description, metadata_for, with_metadata
from edgeq.tflite.model import TfliteModel, parse_tflite
from edgeq.tflite.signatures import calibrator_order
from edgeq.tflite.summary import ModelSummary, manifest_for, summarize
from edgeq.timing import Timings, phase

log = logging.getLogger(__name__)

MODES = ("int8", "int8-fallback", "int16x8", "dynamic", "float16")
CALIBRATED_MODES = ("int8", "int8-fallback", "int16x8")


@dataclass(frozen=True)
class ConvertOptions:
    mode: str = "int8"
    io: str | None = None  # default: the first of IO_TYPES[mode]
    per_tensor: bool = False
    keep_float: tuple[str, ...] = ()
    samples: int = 200
    seed: int = 0
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    signatures: tuple[str, ...] = ("serving_default",)  # SavedModel signature keys, or ("all",)
    calibration: str = "minmax"  # activation ranges: minmax (TensorFlow's) | percentile[:P] | mse | entropy | auto
    custom_objects: str | None = None  # a .py with the Keras model's custom classes
    trust_model: bool = False  # let Keras run the Python code of Lambda layers
    input_shapes: tuple[str, ...] = ()
    jobs: int | None = None  # calibration processes; default: the CPU cores available
    targets: tuple[str, ...] = ()  # edgetpu | nnapi | xnnpack: warn about ops that will not run there
    eval_data: str | None = None  # with a budget: search the fewest float layers that meet it
    budget: Budget | None = None
    max_float_layers: int | None = None
    allow_int16x8: bool = False  # the search may try 16-bit activations before float layers
    channels_last: bool = False  # a PyTorch source's 4-D inputs as NHWC (litert-torch's to_channel_last_io)
    cache: bool = True  # reuse (and keep) calibrations and finished conversions in the user's cache folder
    optimize: str | None = None  # "latency": the fastest candidate on XNNPACK that keeps the budget
    device: str | None = None  # a device profile: --optimize latency times the candidates there

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.io is not None and self.io not in IO_TYPES[self.mode]:
            raise UsageError(f"--io {self.io} does not go with --mode {self.mode}; use {' or '.join(IO_TYPES[self.mode])}")
        if self.keep_float and self.mode not in ("int8", "int8-fallback"):
            raise UsageError(f"--keep-float works with --mode int8 or int8-fallback, not {self.mode}")
        if self.samples < 1:
            raise UsageError(f"--samples must be at least 1, got {self.samples}")
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if self.budget is not None and self.eval_data is None:
            raise UsageError("the accuracy search needs both --eval-data and a budget (--max-drop, --min-agreement or --min-sqnr)")
        if self.eval_data is not None and self.budget is None and self.calibration != "auto":
            raise UsageError("--eval-data needs a budget (--max-drop, --min-agreement or --min-sqnr), or --calibration auto")
        if self.eval_data is not None and self.mode not in ("int8", "int8-fallback"):
            raise UsageError(f"--eval-data searches int8 mixes; it does not go with --mode {self.mode}")
        if self.calibration != "auto":
            Method.parse(self.calibration)
        elif self.eval_data is None:
            raise UsageError("--calibration auto picks the method by its accuracy: pass --eval-data (and a budget if you have one)")
        if self.calibration != "minmax" and self.mode not in ("int8", "int8-fallback"):
            raise UsageError(f"--calibration {self.calibration} sets int8 activation ranges; it does not go with --mode {self.mode}")
        if self.optimize not in (None, "latency"):
            raise UsageError(f"--optimize {self.optimize!r}: use latency")
        if self.device and not self.optimize:
            raise UsageError("--device times the --optimize latency candidates on a device; add --optimize latency")
        if self.optimize and self.mode not in ("int8", "int8-fallback"):
            raise UsageError(f"--optimize latency chooses which op types stay float in an int8 model; not with --mode {self.mode}")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown:
            raise UsageError(f"--target {unknown[0]!r}: use one of {', '.join(TARGETS)}")

    @property
    def calibration_jobs(self) -> int:
        """Parallel calibration serves the int8 modes; int16x8 uses TensorFlow's one-step path."""
        if self.mode not in ("int8", "int8-fallback"):
            return 1
        return min(self.jobs or default_jobs(), self.samples)

    @property
    def io_type(self) -> str:
        return self.recipe.io_type

    @property
    def recipe(self) -> Recipe:
        """What decides the bytes; the rest of these options say how to run and where to write."""
        return Recipe(self.mode, self.io, self.per_tensor, self.keep_float, self.calibration, self.signatures,
                      self.preprocessing, self.samples, self.seed, channels_last=self.channels_last)


@dataclass(frozen=True)
class ChildResult:
    """What the conversion child sends back to the parent, which checks, describes and writes it."""

    model: bytes
    calibration: dict[str, Any] | None
    keep: dict[str, Any]
    float_bytes: int
    search: dict[str, Any] | None
    latency: dict[str, Any] | None  # INT8 against float here, or the --optimize latency candidates
    kind: str  # the source's kind (keras, saved_model, tflite)
    rewrites: list[str]
    preprocessing: Preprocessing  # as resolved against what the model states
    origins: dict[str, str]  # where each preprocessing field came from
    conflicts: list[str]  # flags that contradict what the model states
    calibrated: Calibrated | None = None  # the calibration, when another conversion may reuse it
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConversionResult:
    output: Path
    manifest_path: Path
    manifest: dict[str, Any]
    summary: ModelSummary
    warnings: list[str]
    budget_met: bool | None = None  # None: no accuracy search; False: `output` is the best-effort model

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "manifest_path": str(self.manifest_path), **self.manifest}


@dataclass(frozen=True)
class Conversion:
    """A quantized model and its manifest, in memory: nothing is written until `save`."""

    model: bytes
    manifest: dict[str, Any]
    warnings: list[str]
    budget_met: bool | None = None

    def destination(self, output: Path) -> Path:
        """Where `save(output)` writes: a model that misses its budget is named best-effort."""
        if self.budget_met is False:
            return output.with_name(output.name.removesuffix(".tflite") + ".best-effort.tflite")
        return output

    def save(self, output: str | Path, force: bool = False, protected: list[Path] = ()) -> ConversionResult:
        """Write the model and `<model>.edgeq.json` together, atomically; existing files only with `force`."""
        output = self.destination(Path(output))
        manifest_path = check_outputs(output, force, protected)
        manifest = {**self.manifest, "output": output.name}
        write_files_atomically({output: self.model, manifest_path: json_bytes(manifest)}, force)
        return ConversionResult(output, manifest_path, manifest, summarize(parse_tflite(self.model, output), manifest),
                                self.warnings, self.budget_met)


def check_outputs(output: Path, force: bool, protected: list[Path] = ()) -> Path:
    """The model and manifest paths may be written (`force` for existing files, never over an
    input); returns the manifest's path."""
    if output.suffix != ".tflite":
        raise UsageError(f"{output}: --output must end in .tflite")
    manifest_path = manifest_for(output)
    for path in (output, manifest_path):
        check_writable(path, force, list(protected))
    return manifest_path


def convert(
    model: str | Path,
    output: str | Path,
    data: str | Path | None = None,
    options: ConvertOptions | None = None,
    quiet_native: bool = True,
    isolated: bool = True,
    force: bool = False,
    about: Description | None = None,
    **option_values: Any,
) -> ConversionResult:
    """Convert `model` and save it to `output` (.tflite) with its manifest beside it; the outputs
    are checked before the (long) conversion, and written together at the end."""
    model, output = Path(model), Path(output)
    inputs = [model] + ([Path(data)] if data is not None else [])
    check_outputs(output, force, inputs)
    return quantize_model(model, data, options, quiet_native, isolated, about, **option_values).save(output, force, inputs)


def quantize_model(
    model: str | Path,
    data: str | Path | None = None,
    options: ConvertOptions | None = None,
    quiet_native: bool = True,
    isolated: bool = True,
    about: Description | None = None,
    **option_values: Any,
) -> Conversion:
    """The quantized model of `model` calibrated on `data`, and its manifest; writes nothing.

    `isolated`: TensorFlow's native steps run in a child process, so a crash there is a
    ConversionError, not the end of the caller's process (and this process never imports TensorFlow).
    `about`: TFLite Model Metadata to embed (labels, name, ...); the tensors stay as quantized.
    """
    options = options or ConvertOptions(**option_values)
    model = Path(model)
    if options.mode in CALIBRATED_MODES and data is None and not has_fake_quant(model):
        raise UsageError(f"--mode {options.mode} calibrates on real samples; pass --data DIR|FILE.npy|FILE.npz")
    if not model.exists():
        raise ModelError(f"{model}: no such model; pass a .keras or .h5 file or a SavedModel folder")
    if data is not None and not Path(data).exists():
        raise DataError(f"{data}: no such file or folder; pass an image folder, a .npy or a .npz")
    require_tensorflow("edgeq convert")

    timings = Timings()
    with timings.recording():
        with phase("cache lookup"):
            source_sha256 = sha256_of(model)  # the manifest's too
            cache = Cache.open() if options.cache else None
            keys = cache_keys(model, source_sha256, Path(data) if data is not None else None, options, about) if cache else None
            served = cache.get("conversion", keys.conversion) if cache else None
        if served is not None:
            return _served(served, timings, cache)
        entry = cache.get("calibration", keys.calibration) if cache and keys.calibration else None
        cached = Calibrated.from_entry(entry) if entry else None
        with tempfile.TemporaryDirectory(prefix="edgeq-convert-") as scratch:
            if cached is not None:
                started = time.perf_counter()
                child = _in_child(_requantize, model, quiet_native, isolated, cached, data, options)
                source_model = cached.source_model or (model.read_bytes() if model.suffix.lower() == ".tflite" else None)
            else:
                with phase("export (litert-torch, in its own child)") if model.suffix.lower() == PT2_SUFFIX else nullcontext():
                    float_source = _float_source(model, options, quiet_native, isolated, Path(scratch))
                started = time.perf_counter()
                child = _in_child(_run, model, quiet_native, isolated, float_source, data, options)
                source_model = float_source.read_bytes() if float_source.suffix.lower() == ".tflite" else None
        timings.merge(child.timings)
        timings.add("child process start", time.perf_counter() - started - sum(child.timings.values()))
        fresh = child.calibrated is not None and (cached is None or cached.histograms is None and child.calibrated.histograms is not None)
        if cache and keys.calibration and fresh:
            pt2 = model.suffix.lower() == PT2_SUFFIX
            with phase("cache store"):
                cache.put("calibration", keys.calibration, *replace(child.calibrated, source_model=source_model if pt2 else None).to_entry())
        with phase("checks"):
            conversion = _described(child, model, source_sha256, data, options, about, source_model)
        conversion.manifest["cache"] = {"conversion": "miss" if cache else "off",
                                        "calibration": "off" if cache is None else "not reusable" if keys.calibration is None
                                        else "hit" if cached is not None else "miss", "folder": str(cache.folder) if cache else None}
        conversion.manifest["warnings"] += cache.warnings if cache else []
        if cache:
            with phase("cache store"):
                cache.put("conversion", keys.conversion, {"manifest": conversion.manifest, "budget_met": conversion.budget_met},
                          {"model": conversion.model})
    conversion.manifest["timings"] = timings.rounded()
    return conversion


def _served(entry, timings: Timings, cache: Cache) -> Conversion:
    """A conversion done before with the same inputs and options: its bytes (checked against their
    hash when read) and manifest, which says it came from the cache and how long this run took."""
    manifest = entry.header["manifest"]
    manifest["cache"] = {**manifest["cache"], "conversion": "hit", "calibration": "not needed"}
    manifest["timings"] = timings.rounded()
    manifest["warnings"] = manifest["warnings"] + cache.warnings
    return Conversion(entry.blobs["model"], manifest, manifest["warnings"], entry.header["budget_met"])


def _described(child: ChildResult, model: Path, source_sha256: str, data: str | Path | None, options: ConvertOptions,
               about: Description | None, source_model: bytes | None) -> Conversion:
    """The child's model checked (strict int8, runs in LiteRT, targets), its metadata embedded, and its manifest."""
    ignored = [] if options.mode in CALIBRATED_MODES else [
        name for name, value in (("--data", data), ("--eval-data", options.eval_data)) if value is not None]
    quantized, calibration, keep, float_bytes, search = child.model, child.calibration, child.keep, child.float_bytes, child.search
    kind = {"kind": child.kind, "rewrites": child.rewrites}
    if model.suffix.lower() == PT2_SUFFIX:
        kind.update(kind="pytorch", rewrites=[f"exported to a float .tflite by litert-torch ({versions()})"
                                              + (", channels-last I/O" if options.channels_last else "")] + child.rewrites)
    pre = child.preprocessing
    options = replace(options, preprocessing=pre)
    result = parse_tflite(quantized)
    summary = summarize(result, {})
    _check_strict(result, summary, options, keep)
    if about is not None:
        quantized = with_metadata(quantized, metadata_for(result, options.preprocessing, about))
        result = parse_tflite(quantized)
    ran_on = _proven_to_run(quantized, model, source_model, data, options)
    targets = {t: check_target(result, t) for t in options.targets}
    target_warnings = [line for report in targets.values() for line in report.warnings()]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "edgeq_version": edgeq.__version__,
        **versions_installed(),
        "source": {"path": str(model), **kind, "sha256": source_sha256, "bytes": size_of(model)},
        "preprocessing": {"used": pre.describe(), "from": child.origins},
        "output": None,
        "model": {"sha256": hashlib.sha256(quantized).hexdigest(), "bytes": len(quantized), "invoked_on": ran_on},
        "recipe": _recipe(options, data, calibration).to_json(),
        "options": _options_dict(options, data),
        "calibration": calibration,
        "signatures": [asdict(sig) for sig in summary.signatures],
        "inputs": [asdict(t) for t in summary.inputs],
        "outputs": [asdict(t) for t in summary.outputs],
        "sizes": {
            "float_bytes": float_bytes,
            "float_is": "calibrated float graph" if calibration and calibration.get("samples") else "float model",
            "model_bytes": result.size,
            "ratio": round(result.size / float_bytes, 4) if float_bytes else None,
            **({"source_bytes": size_of(model), "source_ratio": round(result.size / size_of(model), 4)}
               if model.suffix.lower() == ".tflite" else {}),
        },
        "op_census": summary.op_census,
        "ops_total": summary.ops_total,
        "ops_int8": summary.ops_int8,
        "weights": summary.weights,
        "float_ops": summary.float_ops,
        "float_tensors": summary.float_tensors,
        "keep_float": keep,
        "metadata": None if about is None else {"kind": about.kind, "name": about.name, "version": about.version,
                                                "labels": len(about.labels), "labels_file": "labels.txt" if about.labels else None},
        "search": search,
        "latency": child.latency,
        "targets": {t: {k: v for k, v in r.to_dict().items() if k != "ops"} for t, r in targets.items()},
        "warnings": child.conflicts + [f"{' and '.join(ignored)} ignored: --mode {options.mode} does not calibrate" for _ in ignored[:1]]
        + (calibration.get("warnings", []) if calibration else []) + target_warnings
        + (search["notes"] if search else []),
    }
    return Conversion(quantized, manifest, manifest["warnings"], None if search is None else search["met"])


def _in_child(function, model: Path, quiet_native: bool, isolated: bool, *args):
    """`function(*args)` in the crash-contained child: edgeq's own exceptions are internal errors
    (exit 3), TensorFlow's and LiteRT's are the converter's (exit 2)."""
    with captured_native_stderr(quiet_native) as native:
        try:
            run = run_isolated if isolated else (lambda function, *args: function(*args))
            return run(function, *args)
        except EdgeqError:
            raise
        except Exception as exc:
            if isinstance(exc, ChildError):
                log.debug("the conversion's traceback (in its child process):\n%s", exc.child_traceback)
                if exc.ours:
                    raise InternalError(f"internal error: {exc} (rerun with -v for the traceback)") from exc
            detail = native.last_error_line() or first_line(exc)
            raise ConversionError(f"the TFLite converter failed on {model}: {detail}") from exc


def _float_source(model: Path, options: ConvertOptions, quiet_native: bool, isolated: bool, scratch: Path) -> Path:
    """The file the conversion starts from: the model itself, or for a PyTorch program (.pt2) the
    float .tflite litert-torch makes of it."""
    if model.suffix.lower() != PT2_SUFFIX:
        if options.channels_last:
            raise UsageError("--channels-last sets the I/O layout of a PyTorch (.pt2) source; drop it for this model")
        return model
    require_torch(f"converting {model.name}")
    flat = _in_child(to_float_tflite, model, quiet_native, isolated, model, options.channels_last)
    path = scratch / (model.stem + ".tflite")
    path.write_bytes(flat)
    return path


def _latency(calibrated: bytes, quantized: bytes, specs: list[InputSpec], options: ConvertOptions, keep: dict[str, Any], data: Path):
    """INT8 against float on XNNPACK here; with --optimize latency, the fastest candidate that keeps
    the budget (its kept op types join `keep`). Returns the model to write and the record."""
    from edgeq.conversion import latency

    step("timing INT8 against float (XNNPACK, 1 thread)")
    order = calibrator_order(parse_tflite(calibrated), [s.name for s in specs])
    samples = [[sample[k] for k in order] for sample in open_samples(data, specs, options.preprocessing, 16, options.seed)]
    if options.optimize != "latency":
        return quantized, latency.slower_than_float(calibrated, quantized, samples[0])
    if options.budget is not None:
        from edgeq.conversion.search import Evaluator

        eval_source = open_samples(options.eval_data, specs, options.preprocessing, None, options.seed)
        evaluator = Evaluator(calibrated, list(eval_source), [s.name for s in specs], eval_source.labels,
                              options.budget, class_count=len(eval_source.class_names or []) or None)

        def score(model: bytes):
            record = evaluator.evaluate(model, [], kind="int8 (latency candidate)")
            return record["worst_sqnr_db"], record["meets"]
    else:
        score = latency.sqnr_scorer(calibrated, samples)
    with_ops = lambda ops: quantize(calibrated, options.recipe, {**keep, "ops": keep["ops"] + list(ops)})  # noqa: E731
    device, where, note = _timing_device(options.device)
    chosen, record = latency.optimize(calibrated, quantized, with_ops, samples[0], score, device=device, where=where)
    record["note"] = note
    keep["ops"] = keep["ops"] + record["keep_ops"]
    return chosen, record


def _timing_device(name: str | None):
    """The device profile the candidates are timed on, how to name it, and why not when not."""
    if name is None:
        return None, "xnnpack (this machine)", None
    from edgeq.run.devices import load_profile

    profile = load_profile(name)
    if profile.emulated:
        return None, "xnnpack (this machine)", (f"{profile.name} is emulated ({profile.address}): an emulator gives no "
                                                "meaningful latency, so the candidates were timed on this machine")
    return profile, f"{profile.delegates[0]} on {profile.name} ({profile.address})", None


def _proven_to_run(quantized: bytes, model: Path, source_model: bytes | None, data: Path | None, options: ConvertOptions) -> str:
    """Every file edgeq writes runs: loaded, allocated and invoked once in LiteRT before it is
    written. A file that does not is never written: exit 2 when the source cannot run either,
    else exit 3 (the fault is in the conversion)."""
    from edgeq.run.litert import invoke_once

    def first(ports: list) -> list | None:
        if data is None or options.mode not in CALIBRATED_MODES:
            return None
        try:
            return next(iter(open_samples(data, [InputSpec(n, s) for n, s in ports], options.preprocessing, 1, options.seed)))
        except (EdgeqError, StopIteration):  # another layout of keys (several signatures): zeros still prove it loads
            return None

    try:
        return invoke_once(quantized, first)
    except (RuntimeError, ValueError) as exc:
        if source_model is not None:
            try:
                invoke_once(source_model, lambda ports: None)
            except (RuntimeError, ValueError) as source_exc:
                raise ModelError(f"{model}: LiteRT cannot run the source model either ({source_exc}); nothing was written") from None
        raise InternalError(f"the quantized model does not run in LiteRT ({exc}); nothing was written (rerun with -v, "
                            "and report it with the model if you can)") from None


def _run(model: Path, data: Path | None, options: ConvertOptions) -> ChildResult:
    """The conversion child: load, calibrate, quantize; the phases timed."""
    timings = Timings()
    with timings.recording():
        with phase("import"):
            import tensorflow  # noqa: F401 - once, here: timed apart from loading the model

        jobs = options.calibration_jobs if data is not None else 1
        with ParallelCalibrator(jobs) if jobs > 1 else nullcontext() as workers:  # they start while TF loads
            result = _run_with(model, data, options, workers)
    return replace(result, timings=timings.seconds)


def _requantize(calibrated: Calibrated, data: Path, options: ConvertOptions) -> ChildResult:
    """The conversion child when the calibration is cached: no model to load, no TensorFlow to import."""
    timings = Timings()
    with timings.recording():
        result = _finish(calibrated, None, data, replace(options, preprocessing=calibrated.preprocessing))
    return replace(result, timings=timings.seconds)


def _run_with(model: Path, data: Path | None, options: ConvertOptions, workers: ParallelCalibrator | None) -> ChildResult:
    step("loading the model")
    with phase("load"):
        source = load_source(model, options.signatures, list(options.input_shapes), KerasCode(options.custom_objects, options.trust_model))
    pre, origins, conflicts = resolve(options.preprocessing, stated_scaling(source))
    options = replace(options, preprocessing=pre)
    learned = {"kind": source.kind, "rewrites": source.rewrites, "preprocessing": pre, "origins": origins, "conflicts": conflicts}
    keep: dict[str, Any] = {"requested": list(options.keep_float), "nodes": [], "ops": []}
    if source.trained_ranges and options.mode in ("int8", "int8-fallback"):
        return _trained(source, data, options, keep, partial(ChildResult, **learned))
    if options.mode not in CALIBRATED_MODES:
        with phase("convert"):
            quantized = one_step(source, options.recipe, None)
            float_bytes = len(one_step(source, options.recipe, None, float_only=True))
        return ChildResult(source.restore(quantized), None, keep, float_bytes, None, None, **learned)
    samples, audits, stream = _calibration_stream(source, data, options)
    if len(source.signatures) > 1:
        if options.budget is not None or options.calibration != "minmax":
            raise UsageError("the accuracy search and --calibration other than minmax take one signature; convert with one --signature")
        workers = None  # the parallel calibrator takes one subgraph; TensorFlow's own one takes them all
    if options.mode == "int16x8":
        with phase("convert and calibrate"):
            quantized = one_step(source, options.recipe, lambda: keyed(source)(stream))
        with phase("convert"):
            float_bytes = len(one_step(source, options.recipe, None, float_only=True))
        return ChildResult(source.restore(quantized), _calibration_record(samples, audits, data, options, 1), keep, float_bytes,
                           None, None, **learned)
    if workers is None:
        calibrated = calibrate(source, options.recipe, lambda: stream)
    else:  # TensorFlow calibrates on one sample to build the graph; the workers on all
        first = list(itertools.islice(stream, 1))
        calibrated = calibrate(source, options.recipe, lambda: iter(first), "convert")
        order = calibrator_order(parse_tflite(calibrated), [s.name for s in source.specs])
        with phase("calibrate"):
            calibrated = workers.calibrate(calibrated, ([sample[k] for k in order] for sample in itertools.chain(first, stream)))
    record = _calibration_record(samples, audits, data, options, len(workers.workers) if workers else 1)
    result = _finish(Calibrated(calibrated, source.specs, record, **learned), source, data, options)
    reusable = len(source.signatures) == 1 and source.kind in ("keras", "saved_model", "tflite")  # restore() is the identity
    return replace(result, model=source.restore(result.model), calibrated=result.calibrated if reusable else None)


def _finish(calibrated: Calibrated, source, data: Path, options: ConvertOptions) -> ChildResult:
    """From the calibrated graph on: the range method, the layers kept in float, quantization, the
    accuracy search, the latency check. `source` is None when the calibration came from the cache."""
    keep: dict[str, Any] = {"requested": list(options.keep_float), "nodes": [], "ops": []}
    keep.update(resolve_keep_float(parse_tflite(calibrated.model), options.keep_float))
    model, ranges_record, search = calibrated.model, None, None
    if options.calibration != "minmax":
        with phase("ranges"):
            model, ranges_record, histograms = choose_ranges(calibrated.model, calibrated.specs, options, data, keep,
                                                             options.calibration_jobs, calibrated.histograms)
        calibrated = calibrated.with_histograms(histograms)
    with phase("quantize"):
        quantized = quantize(model, options.recipe, keep)
    if options.budget is not None:
        with phase("search"):
            quantized, search = _search(model, quantized, calibrated.specs, source, options, keep, data)
        if ranges_record and ranges_record.get("steps"):
            search["steps"] = ranges_record["steps"] + search["steps"]
            search["evaluations"] += len(ranges_record["steps"])
        keep["nodes"] += [n for n in search["chosen"]["float_layers"] if n not in keep["nodes"]]
    latency_record = None
    if source is not None and len(source.signatures) > 1:
        if options.optimize:
            raise UsageError("--optimize latency takes one signature; convert with one --signature")
    else:
        with phase("latency check"):
            quantized, latency_record = _latency(model, quantized, calibrated.specs, options, keep, data)
    record = {**calibrated.calibration,
              **({"method": "minmax"} if ranges_record is None else {k: v for k, v in ranges_record.items() if k != "steps"})}
    return ChildResult(quantized, record, keep, len(calibrated.model), search, latency_record, calibrated.kind, calibrated.rewrites,
                       calibrated.preprocessing, calibrated.origins, calibrated.conflicts, calibrated=calibrated)


def _calibration_record(samples: list, audits: list[Audit], data: Path, options: ConvertOptions, jobs: int) -> dict[str, Any]:
    """What the calibration samples were: how many, from where, their fingerprint and observed ranges."""
    warnings = [w for a in audits for w in a.warnings()]
    for a, described in zip(audits, (s.describe() for s in samples)):
        if a.count == 0:
            raise DataError(f"{described}: no samples to calibrate with")
        if a.count < options.samples:
            warnings.insert(0, f"asked for {options.samples} calibration samples but {described} gave {a.count}")
    return {
        "samples": audits[0].count,
        "requested": options.samples,
        "data": str(data),
        "fingerprint": audits[0].fingerprint,
        "jobs": jobs,
        "observed_range": {s.name: [lo, hi] for a in audits for s, lo, hi in zip(a.specs, a.low, a.high)},
        "warnings": warnings,
    }


def _trained(source, data: Path | None, options: ConvertOptions, keep: dict[str, Any], done: Callable[..., ChildResult]):
    """A quantization-aware-trained model: the converter takes every range from the fake-quant ops;
    --data, if given, only fills tensors that have none (and the trained ranges stay)."""
    if options.keep_float or options.budget is not None:
        raise UsageError("a quantization-aware-trained model keeps its trained ranges: --keep-float and the accuracy "
                         "search do not apply; retrain or convert its float original")
    import tensorflow as tf

    step("converting with the trained ranges (QAT)")
    converter = source.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = tf_type(options.io_type)
    warnings = []
    if data is not None:
        samples = open_samples(data, source.specs, options.preprocessing, options.samples, options.seed)
        converter.representative_dataset = lambda: keyed(source)(iter(samples))
        warnings.append("the model carries trained ranges (QAT): they are kept; --data only calibrates tensors without one")
    quantized = converter.convert()
    untrained = summarize(parse_tflite(quantized), {}).float_ops
    if data is None and untrained:
        names = ", ".join(o["outputs"][0] for o in untrained[:6]) + (f" and {len(untrained) - 6} more" if len(untrained) > 6 else "")
        raise UsageError(f"the fake-quant ops give no range for {names} (quantization-aware training covered part of the "
                         "model); pass --data to calibrate those tensors")
    float_bytes = len(one_step(source, options.recipe, None, float_only=True))
    calibration = {"method": "trained ranges (QAT)" + (" and calibration for the rest" if data is not None else ""), "samples": 0, "requested": 0, "data": str(data) if data else None,
                   "fingerprint": None, "jobs": 1, "observed_range": {}, "warnings": warnings}
    return done(source.restore(quantized), calibration, keep, float_bytes, None, None)


def _calibration_stream(source, data: Path, options: ConvertOptions):
    """The samples of every signature, audited as they stream by.

    One signature: lists of arrays in input order. Several: (key, {input: array}) pairs, as
    TensorFlow's calibrator takes them, fed from a .npz holding `KEY/INPUT` arrays.
    """
    multi = len(source.signatures) > 1
    sources, audits = [], []
    for key, specs in source.signatures.items():
        named = [InputSpec(f"{key}/{s.name}", s.shape) for s in specs] if multi else specs
        samples = open_samples(data, named, options.preprocessing, options.samples, options.seed)
        if isinstance(samples, ImageFolder):
            samples.check_headers()
        sources.append(samples)
        arrays = isinstance(samples, ArraySource)
        audits.append(Audit(named, options.preprocessing.expected_range() if arrays else None, unscaled_warning=arrays))
    total = sum(len(s) for s in sources)
    if not multi:
        return sources, audits, counted("calibrating", audits[0].watch(sources[0]), total)
    stream = ((key, {s.name: a for s, a in zip(specs, sample)})
              for (key, specs), samples, audit in zip(source.signatures.items(), sources, audits)
              for sample in audit.watch(samples))
    return sources, audits, counted("calibrating", stream, total)


def _search(calibrated: bytes, full_int8: bytes, specs: list[InputSpec], source, options: ConvertOptions, keep: dict[str, Any],
            data: Path):
    """The accuracy-budget search of edgeq.conversion.search over this conversion's calibrated graph;
    int16x8 is tried when the source is at hand (not from the calibration cache, which --allow-int16x8 skips)."""

    from edgeq.conversion.search import Evaluator, search
    from edgeq.tflite.graph import LayerGraph

    def int16x8() -> bytes:  # TensorFlow's one-step 16x8 path, on the same calibration samples
        wide = replace(options, mode="int16x8", io="float32" if options.io_type == "float32" else "int16", keep_float=(),
                       eval_data=None, budget=None)
        calibration = open_samples(data, source.specs, options.preprocessing, options.samples, options.seed)
        return one_step(source, wide.recipe, lambda: keyed(source)(iter(calibration)))

    eval_source = open_samples(options.eval_data, specs, options.preprocessing, None, options.seed)
    evaluator = Evaluator(calibrated, list(eval_source), [s.name for s in specs], eval_source.labels, options.budget,
                          class_count=len(eval_source.class_names or []) or None)
    with_float = lambda nodes: quantize(calibrated, options.recipe, {**keep, "nodes": keep["nodes"] + nodes})  # noqa: E731
    graph = LayerGraph.of(parse_tflite(calibrated), frozenset(keep["nodes"]), frozenset(keep["ops"]))
    model, record = search(evaluator, full_int8, graph, with_float, options.max_float_layers,
                           int16x8 if options.allow_int16x8 and source is not None else None)
    record["eval_data"] = str(options.eval_data)
    bound = next((s for s in record["steps"] if s.get("phase") == "every layer feeding the missed outputs"), None)
    if not record["met"] and bound is not None and options.io_type != "float32":
        record["notes"].append(f"with every layer feeding the missed outputs in float, the worst output reached "
                               f"{bound['worst_sqnr_db']} dB: the {options.io_type} input and output tensors stay quantized; "
                               "--io float32 lifts that bound")
    return model, record


def _check_strict(result: TfliteModel, summary: ModelSummary, options: ConvertOptions, keep: dict[str, Any]) -> None:
    """Strict int8: every op must run on int8 kernels, except those the user kept in float."""
    if options.mode != "int8":
        return
    offending = not_kept(summary.float_ops, keep)
    if not offending:
        return
    float_weights = [op for op in offending if _weights_stayed_float(result, op["index"])]
    if float_weights:
        named = ", ".join(f"{op['type']} ({op['outputs'][0]})" for op in float_weights[:5])
        raise ConversionError(f"strict int8: the weights of {named}{' and more' if len(float_weights) > 5 else ''} stayed float32, "
                              "so the op did (it has int8 kernels): the quantizer did not take those constants; "
                              "rerun with -v, or pass --mode int8-fallback to see the rest")
    named = ", ".join(f"{op['type']} ({op['outputs'][0]})" for op in offending[:5])
    more = f" and {len(offending) - 5} more" if len(offending) > 5 else ""
    raise ConversionError(f"strict int8: no int8 kernel for {named}{more}; pass --mode int8-fallback, or --keep-float {offending[0]['type']}")


WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"})


def _weights_stayed_float(model: TfliteModel, index: int) -> bool:
    """An op with int8 kernels whose weight constant is still float: its weights, not its kernel, kept it float."""
    op = model.operators[index]
    weight = op.inputs[1] if op.type in WEIGHTED_OPS and len(op.inputs) > 1 else -1
    return weight >= 0 and model.tensors[weight].is_constant and model.tensors[weight].is_float


def _recipe(options: ConvertOptions, data: Path | None, calibration: dict[str, Any] | None) -> Recipe:
    """The recipe as it was carried out: the method `auto` settled on, the samples' fingerprint."""

    method = (calibration or {}).get("method")  # absent for int16x8; "trained ranges (QAT)" for QAT
    resolved = method if method and not method.startswith("trained") else options.calibration
    return replace(options.recipe, calibration=resolved, data=str(data) if data is not None else None,
                   fingerprint=(calibration or {}).get("fingerprint"))


def _options_dict(options: ConvertOptions, data: Path | None) -> dict[str, Any]:
    values = asdict(options)
    values["io"] = options.io_type
    values["data"] = str(data) if data is not None else None
    return values
