"""What validate checks beside the outputs: the target's static prediction against the real
compiler or delegate, the PyTorch/ONNX source against its float .tflite, the per-layer errors.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from edgeq.data.samples import InputSpec, Preprocessing, open_samples
from edgeq.frameworks.onnx import ONNX_SUFFIX
from edgeq.records.manifest import Manifest, PerLayer
from edgeq.run.litert import LiteRTRunner
from edgeq.scoring.metrics import Scorer
from edgeq.validation.options import ValidateOptions
from edgeq.validation.reference import channels_last_of, quietly
from edgeq.validation.results import (
    DelegateCheck,
    Latency,
    SourceCheck,
    TargetCheck,
)


def check_target(model: Path, int8: LiteRTRunner, options: ValidateOptions, scratch: Path) -> tuple[TargetCheck, LiteRTRunner]:
    """The static prediction for --target, and what the real target says where it is here.

    Edge TPU: compile with edgetpu_compiler when it is on PATH and compare its operation report;
    run the compiled model through libedgetpu.so.1 when that loads. Nothing is claimed to have
    run on hardware that did not.
    """
    from edgeq.targets import check_target
    from edgeq.targets import edgetpu_toolchain as edgetpu

    prediction = check_target(int8.model, options.target)
    section = TargetCheck(options.target, prediction.to_dict())
    if options.target == "xnnpack":
        on_xnnpack = int8.delegate == "xnnpack"
        return replace(section, ran_on_target=on_xnnpack, delegate_check=DelegateCheck.pending() if on_xnnpack else None), int8
    if options.target == "nnapi":
        return replace(
            section, notes=("NNAPI runs only on Android: this is the static prediction; validate on a phone with --device",)
        ), int8
    compiled, notes = None, []
    if shutil.which(edgetpu.COMPILER):
        report, compiled = edgetpu.compile_model(model, scratch)
        section = replace(section, compiler=replace(report, comparison=edgetpu.compare(prediction, report)))
    else:
        notes.append(
            f"{edgetpu.COMPILER} is not on PATH: the model was not compiled; the Edge TPU figures are the static prediction"
        )
    why_not = edgetpu.library_loads()
    if why_not is not None:
        notes.append(
            f"{edgetpu.LIBRARY} cannot be loaded ({why_not}): nothing ran on an Edge TPU; latency and outputs are from "
            f"{int8.delegate} on this CPU"
        )
    elif compiled is not None:
        int8 = LiteRTRunner(
            compiled, threads=options.threads, delegate_library=edgetpu.LIBRARY, delegate_options=options.delegate_options
        )
        section = replace(section, ran_on_target=True)
    else:
        notes.append(f"{edgetpu.LIBRARY} loads but there is no compiled model to run on it")
    return replace(section, notes=tuple(notes)), int8


def delegate_check_of(target: TargetCheck, latency: Latency) -> DelegateCheck:
    """XNNPACK: the nodes the real delegate took against the prediction."""
    predicted_kept, predicted_delegated = target.predicted_kept()
    actual_kept = latency.cpu_fallback_ops
    return DelegateCheck(
        predicted_delegated,
        latency.delegated_nodes,
        predicted_kept,
        actual_kept,
        predicted_kept == actual_kept and predicted_delegated == latency.delegated_nodes,
    )


SOURCE_CHECK_SAMPLES = 64


def check_source(
    reference: Path, float_path: Path, data, options: ValidateOptions, pre: Preprocessing, manifest: Manifest | None
) -> SourceCheck:
    """The float .tflite against PyTorch itself, or the ONNX model in ONNX Runtime, on the first
    samples: the conversion's own error."""
    from edgeq.frameworks.onnx import run_onnx
    from edgeq.frameworks.pytorch import run_program
    from edgeq.host.isolation import run_isolated

    ref = LiteRTRunner(float_path, options.delegate, options.threads)
    specs = [InputSpec(p.label, p.shape) for p in ref.input_ports]
    samples = list(open_samples(data, specs, pre, min(options.limit or SOURCE_CHECK_SAMPLES, SOURCE_CHECK_SAMPLES), options.seed))
    onnx = reference.suffix.lower() == ONNX_SUFFIX
    runtime = "ONNX Runtime" if onnx else "PyTorch"
    if onnx:
        torch_outputs = run_isolated(quietly, run_onnx, reference, samples, channels_last_of(manifest), what=runtime)
    else:
        torch_outputs = run_isolated(
            quietly, run_program, reference, samples, channels_last_of(manifest), options.trust_model, what=runtime
        )
    names = [p.label for p in ref.output_ports]
    scorer = Scorer(names, ["values"] * len(names))
    for sample, want in zip(samples, torch_outputs):
        scorer.add([w.reshape(p.shape) for w, p in zip(want, ref.output_ports)], ref.run(sample), None)
    scores = scorer.result()
    return SourceCheck(f"{runtime} ({reference.name})", len(samples), scores.outputs, scores.worst_sqnr_db)


def per_layer_of(
    model: Path,
    reference: Path,
    data,
    specs: list[InputSpec],
    options: ValidateOptions,
    manifest: Manifest | None,
    pre: Preprocessing,
) -> PerLayer:
    """The debugger's samples go through the preprocessing the main sweep resolved (flags, manifest,
    or the model's metadata), so both judge the same inputs."""
    from edgeq.analysis.per_layer import per_layer_errors

    samples = list(open_samples(data, specs, pre, options.per_layer_samples, options.seed))
    return per_layer_errors(
        model, reference, samples, specs, options.signature, options.custom_objects, options.trust_model, manifest
    )
