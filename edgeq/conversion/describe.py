"""The parent's side of a conversion: the child's model checked (strict int8, runs in LiteRT,
targets), its metadata embedded, and its manifest."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeq.conversion.child import ChildResult
from edgeq.conversion.options import ConvertOptions
from edgeq.conversion.quantize import not_kept
from edgeq.conversion.result import QuantizedModel
from edgeq.core.cache import versions_installed
from edgeq.core.errors import ConversionError, EdgeqError, InternalError, ModelError
from edgeq.core.fileio import size_of
from edgeq.core.version import __version__
from edgeq.data.samples import InputSpec, fed_as_arrays
from edgeq.frameworks.onnx import ONNX_SUFFIX
from edgeq.frameworks.onnx import versions as onnx_versions
from edgeq.frameworks.pytorch import PT2_SUFFIX, versions
from edgeq.records.manifest import Embedded, Manifest, ModelFile, PreprocessingUsed, Sizes, Source
from edgeq.targets import check_target
from edgeq.tflite.metadata import Description, metadata_for, with_metadata
from edgeq.tflite.model import TfliteModel, parse_tflite
from edgeq.tflite.summary import ModelSummary, summarize

WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"})


def described(
    result: ChildResult,
    model: Path,
    source_sha256: str,
    data: Path | None,
    options: ConvertOptions,
    about: Description | None,
    source_model: bytes | None,
):
    """The model to write (with its metadata) and its manifest; raises where the model must not be written."""
    recipe = options.recipe
    quantized = result.model
    parsed = parse_tflite(quantized)
    summary = summarize(parsed)
    check_strict(parsed, summary, options, result.keep)
    if about is not None:
        quantized = with_metadata(quantized, metadata_for(parsed, result.learned.preprocessing, about))
        parsed = parse_tflite(quantized)
    ran_on = _proven_to_run(quantized, model, source_model, data, options, result)
    targets = {t: check_target(parsed, t) for t in options.targets}
    calibration = result.calibration
    chosen_float = (result.search.chosen.float_layers if result.search else ()) + (
        result.latency.keep_ops if result.latency else ()
    )
    carried_out = recipe.carried_out(
        result.method,
        str(data) if data is not None else None,
        calibration.fingerprint if calibration else None,
        chosen_float,
        result.latency.rewrites if result.latency else (),
        result.refinement.method if result.refinement else None,
        result.search.chosen.int16_layers if result.search else (),
    )
    versions: dict[str, Any] = versions_installed()  # tensorflow_version=..., keras_version=..., litert_version=...
    manifest = Manifest(
        source=_source(result, model, source_sha256, options),
        recipe=replace(carried_out, preprocessing=result.learned.preprocessing),
        sizes=_sizes(result, parsed, model),
        edgeq_version=__version__,
        **versions,
        preprocessing=PreprocessingUsed(result.learned.preprocessing, result.learned.origins, not fed_as_arrays(data)),
        model=ModelFile(hashlib.sha256(quantized).hexdigest(), len(quantized), ran_on),
        options=options.run_options(),
        calibration=calibration,
        signatures=tuple(summary.signatures),
        inputs=tuple(summary.inputs),
        outputs=tuple(summary.outputs),
        op_census=summary.op_census,
        ops_total=summary.ops_total,
        ops_int8=summary.ops_int8,
        weights=summary.weights,
        float_ops=tuple(summary.float_ops),
        float_tensors=tuple(summary.float_tensors),
        keep_float=result.keep,
        metadata=None
        if about is None
        else Embedded(about.kind, about.name, about.version, len(about.labels), "labels.txt" if about.labels else None),
        search=result.search,
        refinement=result.refinement,
        latency=result.latency,
        targets={t: r.summary() for t, r in targets.items()},
        warnings=_warnings(result, data, options, [line for report in targets.values() for line in report.warnings()]),
    )
    return QuantizedModel(quantized, manifest)


def _source(result: ChildResult, model: Path, source_sha256: str, options: ConvertOptions) -> Source:
    suffix = model.suffix.lower()
    if suffix in (PT2_SUFFIX, ONNX_SUFFIX):
        exported = (
            f"exported to a float .tflite by {'onnx2torch and ' if suffix == ONNX_SUFFIX else ''}litert-torch "
            f"({onnx_versions() if suffix == ONNX_SUFFIX else versions()})"
            + (", channels-last I/O" if options.recipe.channels_last else "")
        )
        kind = "onnx" if suffix == ONNX_SUFFIX else "pytorch"
        return Source(str(model), kind, source_sha256, size_of(model), (exported,) + result.learned.rewrites)
    return Source(str(model), result.learned.kind, source_sha256, size_of(model), result.learned.rewrites)


def _sizes(result: ChildResult, parsed: TfliteModel, model: Path) -> Sizes:
    float_bytes = result.float_bytes
    from_tflite = model.suffix.lower() == ".tflite"
    return Sizes(
        float_bytes,
        parsed.size,
        round(parsed.size / float_bytes, 4) if float_bytes else None,
        "float .tflite",
        size_of(model) if from_tflite else None,
        round(parsed.size / size_of(model), 4) if from_tflite else None,
    )


def _warnings(result: ChildResult, data: Path | None, options: ConvertOptions, target_warnings: list[str]) -> tuple[str, ...]:
    mode = options.recipe.mode
    ignored = (
        []
        if mode.calibrates
        else [name for name, value in (("--data", data), ("--eval-data", options.eval_data)) if value is not None]
    )
    return (
        result.learned.conflicts
        + tuple(f"{' and '.join(ignored)} ignored: --mode {mode} does not calibrate" for _ in ignored[:1])
        + (result.calibration.warnings if result.calibration else ())
        + tuple(target_warnings)
        + (result.search.notes if result.search else ())
    )


def check_strict(result: TfliteModel, summary: ModelSummary, options: ConvertOptions, keep) -> None:
    """Strict int8: every op must run on int8 kernels, except those the user kept in float."""
    if options.recipe.mode != "int8":
        return
    offending = not_kept(summary.float_ops, keep)
    if not offending:
        return
    float_weights = [op for op in offending if _weights_stayed_float(result, op.index)]
    if float_weights:
        named = ", ".join(f"{op.type} ({op.outputs[0]})" for op in float_weights[:5])
        raise ConversionError(
            f"strict int8: the weights of {named}{' and more' if len(float_weights) > 5 else ''} stayed float32, "
            "so the op did (it has int8 kernels): the quantizer did not take those constants; "
            "rerun with -v, or pass --mode int8-fallback to see the rest"
        )
    named = ", ".join(f"{op.type} ({op.outputs[0]})" for op in offending[:5])
    more = f" and {len(offending) - 5} more" if len(offending) > 5 else ""
    raise ConversionError(
        f"strict int8: no int8 kernel for {named}{more}; pass --mode int8-fallback, or --keep-float {offending[0].type}"
    )


def _weights_stayed_float(model: TfliteModel, index: int) -> bool:
    """An op with int8 kernels whose weight constant is still float: its weights, not its kernel, kept it float."""
    op = model.operators[index]
    weight = op.inputs[1] if op.type in WEIGHTED_OPS and len(op.inputs) > 1 else -1
    return weight >= 0 and model.tensors[weight].is_constant and model.tensors[weight].is_float


def _proven_to_run(
    quantized: bytes, model: Path, source_model: bytes | None, data: Path | None, options: ConvertOptions, result: ChildResult
) -> str:
    """Every file edgeq writes runs: loaded, allocated and invoked once in LiteRT before it is
    written. A file that does not is never written: exit 2 when the source cannot run either,
    else exit 3 (the fault is in the conversion)."""
    from edgeq.run.litert import invoke_once

    recipe = options.recipe

    def first(ports: list) -> list | None:
        if data is None or not recipe.mode.calibrates:
            return None
        try:
            specs = [InputSpec(n, s) for n, s in ports]
            return next(iter(replace(recipe, preprocessing=result.learned.preprocessing).open(data, specs, 1)))
        except (EdgeqError, StopIteration):  # another layout of keys (several signatures): zeros still prove it loads
            return None

    try:
        return invoke_once(quantized, first)
    except (RuntimeError, ValueError) as exc:
        if source_model is not None:
            try:
                invoke_once(source_model, lambda ports: None)
            except (RuntimeError, ValueError) as source_exc:
                raise ModelError(
                    f"{model}: LiteRT cannot run the source model either ({source_exc}); nothing was written"
                ) from None
        raise InternalError(
            f"the quantized model does not run in LiteRT ({exc}); nothing was written (rerun with -v, "
            "and report it with the model if you can)"
        ) from None
