"""The conversion child: load the source, calibrate, choose ranges, quantize, search, time. It
runs in its own process (crash-contained) and returns a typed `ChildResult` to the parent, which
checks, describes and writes it (edgeq.conversion.converter).

    calibrate -> Calibrated -> ranges -> quantize -> search -> latency -> ChildResult
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeq.conversion.calibration.calibrate import calibrate, keyed
from edgeq.conversion.calibration.calibrated import Calibrated, Learned
from edgeq.conversion.calibration.observed import calibrated_on_xnnpack, observable
from edgeq.conversion.calibration.parallel import ParallelCalibrator
from edgeq.conversion.options import ConvertOptions
from edgeq.conversion.quantize import one_step, quantize, resolve_keep_float, tf_type
from edgeq.conversion.refinement.choice import refined, refined_search
from edgeq.conversion.search.budget import Candidate, evaluator_for
from edgeq.core.errors import DataError, UsageError
from edgeq.core.progress import counted
from edgeq.core.timing import Timings, phase
from edgeq.data.normalization import given_flags, resolve
from edgeq.data.read_ahead import read_ahead
from edgeq.data.samples import ArraySource, Audit, ImageFolder, InputSpec
from edgeq.frameworks.sources import KerasCode, load_source, stated_scaling
from edgeq.host.isolation import step
from edgeq.host.machine import cores
from edgeq.records.manifest import LATENCY_SAMPLES, Calibration, KeepFloat, LatencyCheck, Refinement, Search
from edgeq.records.recipe import Method, Mode, Recipe
from edgeq.run.cluster import each
from edgeq.tflite.model import parse_tflite
from edgeq.tflite.rewrites import rewritten
from edgeq.tflite.signatures import calibrator_order
from edgeq.tflite.summary import float_ops


@dataclass(frozen=True)
class ChildResult:
    """What the conversion child sends back to the parent."""

    model: bytes
    learned: Learned
    float_bytes: int
    keep: KeepFloat
    calibration: Calibration | None = None
    method: Method | None = None  # the range method carried out (what `auto` settled on)
    search: Search | None = None
    latency: LatencyCheck | None = None  # INT8 against float here, or the --optimize latency candidates
    calibrated: Calibrated | None = None  # the calibration, when another conversion may reuse it
    refinement: Refinement | None = None
    timings: dict[str, float] = field(default_factory=dict)


def run(model: Path, data: Path | None, options: ConvertOptions) -> ChildResult:
    """The conversion child: load, calibrate, quantize; the phases timed."""
    timings = Timings()
    with timings.recording():
        with phase("import"):
            import tensorflow  # noqa: F401 - once, here: timed apart from loading the model

        result = _run_with(model, data, options)
    return replace(result, timings=timings.seconds)


def requantize(calibrated: Calibrated, data: Path, options: ConvertOptions) -> ChildResult:
    """The conversion child when the calibration is cached: no model to load, no TensorFlow to import."""
    timings = Timings()
    with timings.recording():
        recipe = replace(options.recipe, preprocessing=calibrated.learned.preprocessing)
        result = finish(calibrated, None, data, replace(options, recipe=recipe))
    return replace(result, timings=timings.seconds)


def _run_with(model: Path, data: Path | None, options: ConvertOptions) -> ChildResult:
    step("loading the model")
    with phase("load"):
        source = load_source(
            model, options.recipe.signatures, list(options.input_shapes), KerasCode(options.custom_objects, options.trust_model)
        )
    resolved = resolve(given_flags(options.recipe.preprocessing), stated=stated_scaling(source))
    options = replace(options, recipe=replace(options.recipe, preprocessing=resolved.preprocessing))
    learned = Learned(source.kind, tuple(source.rewrites), resolved.preprocessing, resolved.origins, resolved.conflicts)
    mode, keep = options.recipe.mode, KeepFloat(options.recipe.keep_float)
    if source.trained_ranges and mode.int8_activations:
        return _trained(source, data, options, learned)
    if not mode.calibrates:
        with phase("convert"):
            quantized = one_step(source, options.recipe, None)
            float_bytes = len(one_step(source, options.recipe, None, float_only=True))
        return ChildResult(source.restore(quantized), learned, float_bytes, keep)
    audits, stream = _calibration_stream(source, data, options)
    if len(source.signatures) > 1 and (options.budget is not None or not options.recipe.calibration.is_minmax):
        raise UsageError(
            "the accuracy search and --calibration other than minmax take one signature; convert with one --signature"
        )
    if mode == Mode.INT16X8:
        with phase("convert and calibrate"):
            quantized = one_step(source, options.recipe, lambda: keyed(source)(stream))
        with phase("convert"):
            float_bytes = len(one_step(source, options.recipe, None, float_only=True))
        return ChildResult(source.restore(quantized), learned, float_bytes, keep, _calibration_record(audits, data, options, 1))
    calibrated, jobs = _calibrated(source, options, stream)
    record = _calibration_record(audits, data, options, jobs)
    with phase("float size"):  # the plain float .tflite validate compares with: one size for one thing
        float_bytes = len(one_step(source, options.recipe, None, float_only=True))
    result = finish(Calibrated(calibrated, tuple(source.specs), record, learned, float_bytes), source, data, options)
    reusable = len(source.signatures) == 1 and source.kind in ("keras", "saved_model", "tflite")  # restore() is the identity
    return replace(result, model=source.restore(result.model), calibrated=result.calibrated if reusable else None)


def _calibrated(source, options: ConvertOptions, stream) -> tuple[bytes, int]:
    """TensorFlow's calibrated graph. TensorFlow calibrates on one sample to build the graph; then
    every sample runs through it on XNNPACK with `jobs` threads (TensorFlow's ranges within float
    rounding), or where XNNPACK's run cannot show every logged tensor, through TensorFlow's own
    calibrator in `jobs` processes (its bytes exactly). Several signatures: TensorFlow's calibrator.
    Returns the graph and the jobs used."""
    if len(source.signatures) > 1:
        return calibrate(source, options.recipe, lambda: stream), 1
    first = list(itertools.islice(stream, 1))
    calibrated = calibrate(source, options.recipe, lambda: iter(first), "convert")
    jobs = options.calibration_jobs(cores(), len(calibrated))
    order = calibrator_order(parse_tflite(calibrated), [s.name for s in source.specs])
    samples = ([sample[k] for k in order] for sample in itertools.chain(first, stream))
    with phase("calibrate"):
        if observable(calibrated):
            step(f"calibrating (the calibrated graph on XNNPACK, {jobs} thread{'s' if jobs > 1 else ''})")
            return calibrated_on_xnnpack(calibrated, samples, jobs), jobs
        step(f"calibrating (TensorFlow's calibrator, {jobs} process{'es' if jobs > 1 else ''})")
        with ParallelCalibrator(jobs) as workers:
            return workers.calibrate(calibrated, samples), jobs


def finish(calibrated: Calibrated, source, data: Path, options: ConvertOptions) -> ChildResult:
    """From the calibrated graph on: the range method, the layers kept in float, quantization, the
    accuracy search, the latency check. `source` is None when the calibration came from the cache."""
    from edgeq.conversion.calibration.choice import MINMAX_RANGES, choose_ranges

    keep = resolve_keep_float(parse_tflite(calibrated.model), options.recipe.keep_float)
    ranges = MINMAX_RANGES
    if not options.recipe.calibration.is_minmax:
        with phase("ranges"):
            ranges = choose_ranges(calibrated, options, data, keep, options.calibration_jobs(cores(), len(calibrated.model)))
        calibrated = calibrated.with_histograms(ranges.histograms)
    model = rewritten(ranges.model or calibrated.model, options.recipe.rewrites)
    with phase("quantize"):
        quantized = quantize(model, options.recipe, keep)
    search, refinement = None, None
    if options.budget is not None:
        if options.recipe.refine != "none":  # the search's all-INT8 candidate is the refined model
            with phase("refine"):
                quantized, refinement = refined(model, quantized, calibrated.specs, options, data)
        with phase("search"):
            quantized, search = _search(model, quantized, calibrated.specs, source, options, keep, data)
        if refinement is not None:
            search, refinement = refined_search(search, refinement)
        search = replace(search, steps=ranges.steps + search.steps, evaluations=search.evaluations + len(ranges.steps))
        keep = replace(keep, nodes=keep.nodes + tuple(n for n in search.chosen.float_layers if n not in keep.nodes))
        if search.chosen.int16_layers:  # --optimize latency's candidates keep the 16-bit layers, as the recipe will
            options = replace(options, recipe=replace(options.recipe, int16_layers=search.chosen.int16_layers))
    latency = None
    if source is not None and len(source.signatures) > 1:
        if options.optimize:
            raise UsageError("--optimize latency takes one signature; convert with one --signature")
    else:
        with phase("latency check"):
            quantized, latency = _latency(model, quantized, calibrated.specs, options, keep, data)
        keep = replace(keep, ops=keep.ops + latency.keep_ops)
        if latency.keep_ops or latency.rewrites:  # a rebuilt candidate: refined below
            refinement = None
    if options.recipe.refine != "none" and refinement is None:
        with phase("refine"):
            quantized, refinement = refined(model, quantized, calibrated.specs, options, data)
    record = replace(calibrated.calibration, ranges=ranges.changes, auto=ranges.tries)
    return ChildResult(
        quantized,
        calibrated.learned,
        calibrated.float_bytes,
        keep,
        record,
        ranges.method,
        search,
        latency,
        calibrated,
        refinement=refinement,
    )


def _calibration_record(audits: list[Audit], data: Path, options: ConvertOptions, jobs: int) -> Calibration:
    """What the calibration samples were: how many, from where, their fingerprint and observed ranges."""
    warnings = [w for a in audits for w in a.warnings()]
    requested = options.recipe.samples
    for a in audits:
        if a.count == 0:
            raise DataError(f"{a.described}: no samples to calibrate with")
        if a.count < requested and options.samples_given:
            warnings.insert(0, f"asked for {requested} calibration samples but {a.described} gave {a.count}")
    return Calibration(
        audits[0].count,
        requested,
        str(data),
        audits[0].fingerprint,
        jobs,
        {s.name: (lo, hi) for a in audits for s, lo, hi in zip(a.specs, a.low, a.high)},
        tuple(warnings),
    )


def _trained(source, data: Path | None, options: ConvertOptions, learned: Learned) -> ChildResult:
    """A quantization-aware-trained model: the converter takes every range from the fake-quant ops;
    --data, if given, only fills tensors that have none (and the trained ranges stay)."""
    recipe = options.recipe
    if recipe.keep_float or options.budget is not None:
        raise UsageError(
            "a quantization-aware-trained model keeps its trained ranges: --keep-float and the accuracy "
            "search do not apply; retrain or convert its float original"
        )
    import tensorflow as tf

    step("converting with the trained ranges (QAT)")
    converter = source.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = tf_type(recipe.io)
    warnings: tuple[str, ...] = ()
    if data is not None:
        samples = recipe.open(data, source.specs)
        converter.representative_dataset = lambda: keyed(source)(iter(samples))
        warnings = ("the model carries trained ranges (QAT): they are kept; --data only calibrates tensors without one",)
    quantized = converter.convert()
    untrained = float_ops(parse_tflite(quantized))
    if data is None and untrained:
        names = ", ".join(o.outputs[0] for o in untrained[:6]) + (f" and {len(untrained) - 6} more" if len(untrained) > 6 else "")
        raise UsageError(
            f"the fake-quant ops give no range for {names} (quantization-aware training covered part of the "
            "model); pass --data to calibrate those tensors"
        )
    float_bytes = len(one_step(source, recipe, None, float_only=True))
    calibration = Calibration(
        0,
        0,
        str(data) if data else None,
        warnings=warnings,
        trained="trained ranges (QAT)" + (" and calibration for the rest" if data is not None else ""),
    )
    return ChildResult(source.restore(quantized), learned, float_bytes, KeepFloat(), calibration)


def _calibration_stream(source, data: Path, options: ConvertOptions):
    """The audits of every signature's samples, and the samples as they stream by, audited.

    One signature: lists of arrays in input order. Several: (key, {input: array}) pairs, as
    TensorFlow's calibrator takes them, fed from a .npz holding `KEY/INPUT` arrays.
    """
    recipe = options.recipe
    multi = len(source.signatures) > 1
    sources, audits = [], []
    for key, specs in source.signatures.items():
        named = [InputSpec(f"{key}/{s.name}", s.shape) for s in specs] if multi else specs
        samples = recipe.open(data, named)
        if isinstance(samples, ImageFolder):
            samples.check_headers()
        sources.append(samples)
        arrays = isinstance(samples, ArraySource)
        audits.append(
            Audit(
                named,
                recipe.preprocessing.expected_range() if arrays else None,
                unscaled_warning=arrays,
                described=samples.describe(),
            )
        )
    total = sum(len(s) for s in sources)
    if not multi:
        sample_bytes = sum(4 * math.prod(s.shape) for s in audits[0].specs)
        return audits, counted("calibrating", read_ahead(audits[0].watch(sources[0]), sample_bytes), total)
    stream = (
        (key, {s.name: a for s, a in zip(specs, sample)})
        for (key, specs), samples, audit in zip(source.signatures.items(), sources, audits)
        for sample in audit.watch(samples)
    )
    return audits, counted("calibrating", stream, total)


def _search(
    calibrated: bytes,
    full_int8: bytes,
    specs: tuple[InputSpec, ...],
    source,
    options: ConvertOptions,
    keep: KeepFloat,
    data: Path,
) -> tuple[bytes, Search]:
    """The accuracy-budget search of edgeq.conversion.search.budget over this conversion's calibrated graph;
    int16x8 throughout is tried when the source is a TensorFlow model at hand (not a .tflite, not from the calibration
    cache, which --allow-int16x8 skips); 16-bit layers from any source."""
    from edgeq.conversion.search.budget import search
    from edgeq.tflite.graph import LayerGraph

    recipe = options.recipe

    def int16x8() -> bytes:  # TensorFlow's one-step 16x8 path, on the same calibration samples
        wide = replace(recipe, mode=Mode.INT16X8, io="float32" if recipe.io == "float32" else "int16", keep_float=())
        calibration = recipe.open(data, source.specs)
        return one_step(source, wide, lambda: keyed(source)(iter(calibration)))

    def with_float(nodes):
        return quantize(calibrated, recipe, replace(keep, nodes=keep.nodes + tuple(nodes)))

    graph = LayerGraph.of(parse_tflite(calibrated), frozenset(keep.nodes), frozenset(keep.ops))
    evaluator = evaluator_for(calibrated, specs, options)
    model, record = search(
        evaluator,
        full_int8,
        graph,
        with_float,
        options.max_float_layers,
        options.search_seconds,
        int16x8 if options.allow_int16x8 and source is not None and source.flatbuffer is None else None,
        _sixteen(calibrated, recipe) if options.allow_int16x8 and not options.targets else None,
    )
    if options.allow_int16x8 and options.targets:
        targets = ", ".join(options.targets)
        record = replace(
            record, notes=record.notes + (f"16-bit layers were not tried: --target {targets} runs no 16-bit activations",)
        )
    record = replace(record, eval_data=str(options.eval_data))
    bound = next((s for s in record.steps if s.phase == "every layer feeding the missed outputs"), None)
    if not record.met and bound is not None and not bound.meets and recipe.io != "float32":
        record = replace(record, notes=record.notes + (_float_io_note(calibrated, recipe, keep, evaluator, bound),))
    return model, record


def _sixteen(calibrated: bytes, recipe: Recipe):
    """The search's a16w8 candidates (edgeq.conversion.a16w8), where the recipe allows them and ai-edge-quantizer is installed."""
    from edgeq.conversion.a16w8 import available

    if not available() or recipe.mode != Mode.INT8 or recipe.io != "int8" or recipe.keep_float or recipe.refine != "none":
        return None

    def sixteen(layers: list[str], floats: list[str]) -> bytes:
        return quantize(calibrated, replace(recipe, int16_layers=tuple(layers)), KeepFloat(nodes=tuple(floats)))

    return sixteen


def _float_io_note(calibrated: bytes, recipe, keep: KeepFloat, evaluator, bound) -> str:
    """Whether float I/O would lift the search's bound: measured (the same layers in float, --io
    float32), so the advice is given only where it helps."""
    floating = replace(recipe, io="float32")
    nodes = keep.nodes + tuple(bound.float_layers)
    step = evaluator.evaluate(quantize(calibrated, floating, replace(keep, nodes=nodes)), list(bound.float_layers))
    figure = "an exact match" if step.exact else f"{step.worst_sqnr_db} dB"
    said = (
        f"with every layer feeding the missed outputs in float, the worst output reached {bound.worst_sqnr_db} dB "
        f"with {recipe.io} input and output tensors, {figure} with float32 ones (measured)"
    )
    if step.meets:
        return f"{said}: --io float32 meets the budget"
    better = step.exact or (step.worst_sqnr_db or 0) > (bound.worst_sqnr_db or 0) + 0.5
    return f"{said}: " + ("--io float32 helps, but not enough" if better else "the quantized I/O is not what limits it")


def _latency(
    calibrated: bytes, quantized: bytes, specs: tuple[InputSpec, ...], options: ConvertOptions, keep: KeepFloat, data: Path
) -> tuple[bytes, LatencyCheck]:
    """INT8 against float on XNNPACK here; with --optimize latency, the fastest candidate that keeps
    the budget (its kept op types are the record's `keep_ops`). Returns the model to write and the record."""
    from edgeq.conversion.search import latency

    step("timing INT8 against float (XNNPACK, 1 thread)")
    recipe = options.recipe
    order = calibrator_order(parse_tflite(calibrated), [s.name for s in specs])
    samples = [[sample[k] for k in order] for sample in recipe.open(data, list(specs), LATENCY_SAMPLES)]
    if options.optimize != "latency":
        return quantized, latency.against_float(calibrated, quantized, samples[0])
    if options.budget is not None:
        evaluator = evaluator_for(calibrated, specs, options)

        def score(models: list[bytes]) -> list[tuple[float | None, bool | None]]:
            steps = evaluator.evaluate_all([Candidate(m) for m in models], "latency candidate")
            return [(s.worst_sqnr_db, s.meets) for _, s in steps]
    else:
        one = latency.sqnr_scorer(calibrated, samples)

        def score(models: list[bytes]) -> list[tuple[float | None, bool | None]]:
            return [one(m) for m in models]

    def with_ops(variants: list[latency.Variant]) -> list[bytes]:
        return each(options.cluster, "latency candidate builds", _with_ops, variants, (calibrated, recipe, keep))

    device, where, note = _timing_device(options.device)
    chosen, record = latency.optimize(calibrated, quantized, with_ops, samples[0], score, device=device, where=where)
    if options.budget is not None and evaluator.held_back is not None and record.chosen != "as converted":
        chosen, record = _latency_confirmed(evaluator.held_back, chosen, quantized, record)
    return chosen, replace(record, note="; ".join(filter(None, (record.note, note))) or None)


def _latency_confirmed(held, chosen: bytes, quantized: bytes, record: LatencyCheck) -> tuple[bytes, LatencyCheck]:
    """--optimize latency's choice judged on the held-back samples: it stands unless it misses the
    budget there while the model as converted meets it."""
    from edgeq.conversion.search.budget import step_figure

    mine, plain = (held.evaluate(m, [], phase="held back") for m in (chosen, quantized))
    if mine.meets or not plain.meets:
        return chosen, record
    converted = next(c for c in record.candidates if c.name == "as converted")
    note = (
        f"{record.chosen} met the budget on the tuning samples and misses it on the {len(held.samples)} held back "
        f"({step_figure(mine, held.budget)}, as converted {step_figure(plain, held.budget)}): kept the model as converted"
    )
    return quantized, replace(
        record,
        chosen=converted.name,
        keep_ops=(),
        rewrites=(),
        faster_than_float=converted.speedup >= 1 or converted.within_noise,
        note=note,
    )


def _with_ops(variant: tuple[tuple[str, ...], tuple[str, ...]], calibrated: bytes, recipe, keep: KeepFloat) -> bytes:
    """An --optimize latency candidate: the op types `variant` names kept in float, its rewrites made."""
    ops, rewrites = variant
    return quantize(rewritten(calibrated, rewrites), recipe, replace(keep, ops=keep.ops + tuple(ops)))


def _timing_device(name: str | None):
    """The device profile the candidates are timed on, how to name it, and why not when not."""
    if name is None:
        return None, "xnnpack (this machine)", None
    from edgeq.run.devices.profiles import load_profile

    profile = load_profile(name)
    if profile.emulated:
        return (
            None,
            "xnnpack (this machine)",
            (
                f"{profile.name} is emulated ({profile.address}): an emulator gives no "
                "meaningful latency, so the candidates were timed on this machine"
            ),
        )
    return profile, f"{profile.delegates[0]} on {profile.name} ({profile.address})", None
