"""Plain-text rendering for the terminal. The library returns data; only this module formats it."""

from __future__ import annotations

import shlex

from edgeq.core.escape import terminal
from edgeq.core.units import gate_figure, gate_status, number, percent, size
from edgeq.records.manifest import (
    LATENCY_SAMPLES,
    ChosenLayer,
    LatencyCheck,
    NpuCompile,
    PreprocessingUsed,
    Search,
    SearchStep,
    StepKind,
)
from edgeq.scoring.metrics import BROKEN_DB, SLICE_GAP_DB
from edgeq.tflite.dispatch import Dispatch
from edgeq.tflite.metadata import ModelMetadata
from edgeq.tflite.summary import ModelSummary, TensorInfo
from edgeq.validation.results import BitExactness, DeviceResult, OutputScore, ValidationResult

SHOWN_FLOAT_OPS = 8


def for_terminal(lines: list[str]) -> str:
    """The terminal's one escaper, applied where the text is put together: a line's control and
    invisible characters (from a name in a file) are shown, never sent (a name's own newline too)."""
    return "\n".join(terminal(line) for line in lines)


def _tensor_line(t: TensorInfo) -> str:
    quant = f"  scale={t.scale:.6g} zero_point={t.zero_point}" if t.scale is not None else ""
    return f"  {terminal(t.name)}  {t.dtype}{list(t.shape)}{quant}"


def _io_lines(s: ModelSummary) -> list[str]:
    """By signature key where the model has signatures (what app code uses), else by tensor."""
    if not s.signatures:
        return ["inputs:", *map(_tensor_line, s.inputs), "outputs:", *map(_tensor_line, s.outputs)]
    lines = []
    for sig in s.signatures:
        lines.append(f"signature '{terminal(sig.key)}':")
        for side in ("inputs", "outputs"):
            lines.append(f"  {side}:")
            for port in getattr(sig, side):
                lines.append(f"  {terminal(port.key)} ->" + _tensor_line(port.tensor)[1:] + f"  (tensor {port.index})")
    return lines


def kernels_line(s: ModelSummary) -> str:
    """Mode-aware: '8 of 8 ops on int16x8 kernels', 'float16 weights, float kernels', ..."""
    kind = s.precision
    if kind == "int8":
        return f"{s.ops_int8} of {s.ops_total} ops on int8 kernels"
    if kind == "int16x8":
        int16 = sum(c.int16 for c in s.op_census.values())
        return f"{int16} of {s.ops_total} ops on int16x8 kernels (16-bit activations, 8-bit weights)"
    return {
        "float16": f"{s.ops_total} ops on float kernels, float16 weights",
        "dynamic": f"{s.ops_total} ops, dynamic range (int8 weights, float activations)",
        "float": f"{s.ops_total} ops on float kernels",
    }[kind]


def summary_text(s: ModelSummary) -> str:
    lines = [f"{terminal(s.path)}: {size(s.bytes)}, {kernels_line(s)}"]
    if s.size_ratio is not None:
        lines.append(f"size vs float: {s.size_ratio:.3f}x of {size(s.float_bytes)} ({s.float_bytes_source})")
    lines += _io_lines(s)
    lines.append("ops:")
    for op, c in s.op_census.items():
        kinds = ", ".join(f"{n} {k}" for k, n in (("int8", c.int8), ("int16", c.int16), ("float", c.float)) if n)
        lines.append(f"  {terminal(op):<24} {c.count:>4}" + (f"  ({kinds})" if kinds else ""))
    lines.append("tensors: " + ", ".join(f"{k} {v}" for k, v in s.dtype_census.items()))
    w = s.weights
    lines.append(
        f"weights: {w.per_channel} per-channel, {w.per_tensor} per-tensor, {w.float} float; "
        f"{size(w.weight_bytes)} of {size(s.bytes)} is constant data"
    )
    if s.float_ops:
        lines.append(f"float ops ({len(s.float_ops)}): " + ", ".join(f"{terminal(o.type)}#{o.index}" for o in s.float_ops))
    else:
        lines.append("float ops: none")
    lines += [f"note: {terminal(n)}" for n in s.notes]
    return for_terminal(lines)


def conversion_text(result) -> str:
    """What `edgeq convert` wrote (an edgeq.conversion.converter.SavedConversion)."""
    m, sizes = result.manifest, result.manifest.sizes
    ratio = f" ({sizes.ratio:.3f}x the {sizes.float_is}'s {size(sizes.float_bytes)})" if sizes.ratio else ""
    lines = [f"wrote {result.output}: {size(sizes.model_bytes)}{ratio}", f"manifest: {result.manifest_path}"]
    if sizes.source_ratio:
        lines.append(
            f"size vs the source file {terminal(m.source.path)}: {sizes.source_ratio:.3f}x of {size(sizes.source_bytes)}"
        )
    lines += _preprocessing_lines(m.preprocessing)
    lines += [f"rewrite: {terminal(note)}" for note in m.source.rewrites]
    lines += calibration_lines(m)
    kept = len(m.float_ops) if m.recipe.mode.int8_activations else 0
    lines.append(
        f"{kernels_line(result.summary)}; mode {m.recipe.mode}"
        + (f" with {kept} op(s) in float" if kept else "")
        + f", io {m.recipe.io}"
    )
    lines += _io_lines(result.summary)
    if m.search:
        data = m.calibration.data if m.calibration else None
        words = (m.source.path, "--data", data, "--output", result.output, "--recipe", result.manifest_path, "--force")
        lines += search_lines(m.search, "edgeq convert " + " ".join(shell_word(str(w)) for w in words) if data else None)
    lines += latency_lines(m.latency, _latency_scored_on(m))
    if m.refinement:
        r = m.refinement
        left = f"; {len(r.skipped)} left as converted" if r.skipped else ""
        if r.method == "rounding":
            lines.append(
                f"refine: int8 weights rounded to fit the float layers in {r.layers} layer(s), biases refitted, "
                f"measured on up to {r.samples} calibration samples in {r.stages} stage(s){left}"
            )
            lines += refined_layer_lines(r.per_layer)
        elif r.method == "bias":
            lines.append(
                f"refine: bias corrected in {r.layers} layer(s), the largest shift {r.largest_shift:g} output step(s), "
                f"input means from {r.samples} calibration samples{left}"
            )
        else:
            lines.append("refine: auto kept the model as converted (no refinement beat it beyond what its samples can tell)")
        lines += [f"  {r.judged}"] if r.judged else []
    lines += cache_lines(m.cache)
    for name, count in m.keep_float.per_name.items():
        lines.append(f"keep-float {terminal(name)}: {count} node(s) kept in float")
    if m.float_ops and m.recipe.mode in ("dynamic", "float16"):
        lines.append(f"float activations by design of --mode {m.recipe.mode}: every op computes in float")
    elif m.float_ops:
        lines.append(
            f"left in float ({len(m.float_ops)}): " + _shortened([f"{o.type} ({short_name(o.outputs[0])})" for o in m.float_ops])
        )
    return for_terminal(lines)


def calibration_lines(m) -> list[str]:
    """How the activation ranges were set: the samples, the method (and what auto tried)."""
    c = m.calibration
    if c is None:
        return []
    if c.trained:
        return [f"calibration: {c.trained}"]
    lines = [f"calibration: {m.recipe.calibration} on {c.samples} samples from {terminal(c.data or 'n/a')}"]
    if c.auto:
        lines.append(
            "  auto tried: "
            + ", ".join(
                f"{terminal(t.method)} {number(t.worst_sqnr_db, '.2f', ' dB')}" + (" (chosen)" if t.chosen else "")
                for t in c.auto
            )
        )
        lines += [
            f"  {terminal(t.method)}'s gain: {t.gain}" + ("" if t.chosen else "; not sure, so minmax is kept")
            for t in c.auto
            if t.gain
        ]
    return lines


def timings_line(timings: dict[str, float] | None) -> str:
    """Where the conversion's time went, phase by phase (the manifest's `timings`)."""
    if not timings:
        return "timings: not recorded (a manifest from an older edgeq)"
    return (
        "timings: "
        + ", ".join(f"{terminal(name)} {seconds:.2f} s" for name, seconds in timings.items())
        + f" (total {sum(timings.values()):.2f} s, before the write)"
    )


def _latency_scored_on(m) -> str:
    """What --optimize latency's SQNR column was computed on (edgeq.conversion.child.latency_check)."""
    if m.options.budget:
        return f"on the --eval-data ({terminal(str(m.options.eval_data))}), as the budget judges it"
    samples = min(LATENCY_SAMPLES, m.calibration.samples) if m.calibration else LATENCY_SAMPLES
    return f"on the first {samples} calibration samples (the data the ranges came from, not held back)"


def latency_lines(latency: LatencyCheck | None, scored_on: str | None = None) -> list[str]:
    """--optimize latency: every candidate timed against float, and the one chosen; `scored_on`:
    what the SQNR column was computed on."""
    if not latency or not latency.optimized:
        return []
    lines = [
        f"optimize latency on {latency.delegate}, {latency.threads} thread, {latency.rounds} interleaved rounds; "
        f"float p50 {latency.float_p50_ms:.4g} ms" + (f"; CPU {terminal(latency.cpu)}" if latency.cpu else "") + ":"
    ]
    width = max(len(terminal(c.name)) for c in latency.candidates)
    for c in latency.candidates:
        budget = "" if c.meets is None else ("  meets the budget" if c.meets else "  misses the budget")
        mark = "  << chosen" if c.name == latency.chosen else ""
        lines.append(
            f"  {terminal(c.name):<{width}}  INT8 p50 {c.int8_p50_ms:.4g} ms ({c.speedup:.2f}x float's speed"
            f"{', within noise' if c.within_noise else ''})  XNNPACK {c.delegated_nodes}/{c.total_nodes} nodes, "
            f"{c.partitions} partition(s)  SQNR {number(c.worst_sqnr_db, '.2f', ' dB')}{budget}{mark}"
        )
    if scored_on:
        lines.append(f"  SQNR: the worst output's against float, {scored_on}")
    if latency.note:
        lines.append(f"  note: {terminal(latency.note)}")
    if latency.judged_by:
        lines.append(f"  chosen by {terminal(latency.judged_by)}")
    if latency.chosen == "as converted" and len(latency.candidates) > 1:
        lines.append(
            "  no candidate beat the model as converted (beyond the run-to-run spread, within the budget): it is written as "
            "converted"
        )
    if not latency.faster_than_float:
        lines.append("  no candidate runs faster than float here: the remaining ops off XNNPACK are listed per candidate")
    return lines


def short_name(tensor_name: str, width: int | None = None) -> str:
    """A fused tensor name ('a/Relu;a/BiasAdd;...') as its first part, whole; cut to its last
    `width` characters only where a plot has no room (a label that says which layer, never a middle)."""
    name = terminal(tensor_name.split(";")[0])
    return name if width is None or len(name) <= width else "…" + name[-(width - 1) :]


def layer_label(layer: ChosenLayer) -> str:
    """A chosen layer as a person tells it apart: its name, its op type and its place in the graph
    (exports that name every layer after the model, as torchcrepe's does, differ only there)."""
    return f"{short_name(layer.node)} ({layer.op_type} #{layer.position})"


def _paired(output: OutputScore) -> str:
    """The reference tensor an output was compared with, where its name differs."""
    ref = output.reference_name
    return f" (vs reference {terminal(ref)})" if ref and ref != output.name else ""


def _preprocessing_lines(pre: PreprocessingUsed | None) -> list[str]:
    if not pre:
        return []
    if not pre.images:
        return ["preprocessing none: .npy/.npz arrays are fed as given (no resize, range or mean/std)"]
    origins: dict[str, list[str]] = {}
    unused = ("value_range",) if pre.normalizes else ("mean", "std")  # the scale is a range or a mean/std
    for name, origin in pre.origins.items():
        if name not in unused and (origin != "default" or name in ("value_range", "resize")):
            origins.setdefault(origin, []).append(name.replace("value_range", "range"))
    return [
        f"preprocessing {pre.settings.describe()}  (" + "; ".join(f"{', '.join(v)} from {k}" for k, v in origins.items()) + ")"
    ]


def validation_text(r: ValidationResult) -> str:
    sizes, acc, lat = r.size, r.accuracy, r.latency
    kind = r.model_kind or "int8"
    lines = [
        terminal(f"{r.model} vs {r.reference} on {r.data}"),
        *_preprocessing_lines(r.preprocessing),
        f"size      float {size(sizes.float_bytes)} (the reference as float .tflite)  {kind} {size(sizes.int8_bytes)}  "
        f"ratio {number(sizes.ratio, '.3f', 'x')}",
    ]
    about = f", classes output '{terminal(acc.output)}'" if acc.output else ""
    if acc.labelled:
        topk = f"  (top-{acc.top_k}: {percent(acc.float_topk)} / {percent(acc.int8_topk)})" if acc.top_k else ""
        lines.append(
            f"accuracy  float top-1 {percent(acc.float_top1)}  {kind} top-1 {percent(acc.int8_top1)}  "
            f"drop {number(acc.top1_drop_pts, '.2f')} pts ({about[2:]}){topk}"
        )
    head = next((o for o in r.outputs if o.name == acc.output), None)
    if head is not None and head.role == "sequence":
        lines.append(
            f"agreement {percent(acc.agreement)} per step ({kind} vs float, sequence output '{terminal(acc.output)}'); "
            f"sequences matching {percent(head.sequence_match)}"
        )
    else:
        lines.append(
            f"agreement {percent(acc.agreement)} (top-1, {kind} vs float{about})"
            if acc.output
            else "agreement n/a: no classes output (see the roles below), so no argmax is taken"
            + ("; a mask's per-pixel agreement is on its output line" if any(o.role == "mask" for o in r.outputs) else "")
        )
    if r.source_check:
        c = r.source_check
        lines.append(
            f"source    the float .tflite against {terminal(c.reference)} on {c.samples} samples (the conversion's "
            f"error; the outputs below are the quantization's):"
        )
        lines += [f"  source  {terminal(o.name)}: {sqnr(o)}  max |err| {number(o.max_abs_error)}" for o in c.outputs]
    lines += [f"output    {output_line(o)}" for o in r.outputs]
    lines.append(
        f"latency   {lat.delegate}, {threads(lat.threads)}, {lat.runs} runs: "
        f"{kind} p50 {number(lat.int8_ms.p50, '.3f', ' ms')}  float p50 {number(lat.float_ms.p50, '.3f', ' ms')}  "
        f"speedup {number(lat.speedup, '.2f', 'x')}"
        + ("  (no measurable difference: within run-to-run noise or under 0.01 ms)" if lat.within_noise else "")
    )
    if lat.cpu:
        lines.append(f"          on {terminal(lat.cpu)}")
    kept = ", ".join(f"{k} x{v}" for k, v in lat.cpu_fallback_ops.items()) or "none"
    lines.append(f"delegate  took {lat.delegated_nodes} of {lat.total_nodes} nodes; on built-in kernels: {kept}")
    if r.target:
        lines += target_lines(r.target)
    lines += streaming_lines(r)
    for d in r.devices:
        where = ", ".join(str(x) for x in (d.transport, d.runtime, d.machine) if x)
        lines.append(f"device    {terminal(d.name)} ({terminal(where)}): {device_summary(d)}")
        lines += [f"          {terminal(line)}" for line in accelerator_lines(d)]
    if r.baseline:
        b = r.baseline
        lines.append(
            f"baseline  {terminal(b.path)}: top-1 {percent(b.int8_top1)} -> {percent(acc.int8_top1)} "
            f"(lost {number(b.regression_pts, '.2f', ' pts')}), p50 {number(b.int8_p50_ms, '.3f', ' ms')} -> "
            f"{number(lat.int8_ms.p50, '.3f', ' ms')} ({number(b.latency_regression_pct, '+.1f', ' %')}), size "
            f"{size(b.int8_bytes)} -> {size(sizes.int8_bytes)} ({number(b.size_growth_pct, '+.1f', ' %')})"
        )
    for g in r.gates:
        lines.append(
            f"gate      {gate_status(g).upper()} {g.name}: {gate_figure(g.name, g.value)} (limit {gate_figure(g.name, g.limit)})"
        )
    layers = r.per_layer.layers if r.per_layer else ()
    if layers:
        lines.append(
            f"per-layer worst {min(5, len(layers))} of {len(layers)} layers by SQNR (--per-layer-csv or --report for all):"
        )
        lines += [
            f"  {l.rank:>3}. {l.op_type:<18} {short_name(l.tensor_name)}  SQNR {number(l.sqnr_db, '.2f', ' dB')}  "
            f"RMSE {number(l.rmse_lsb, '.3f')} LSB"
            for l in layers[:5]
        ]
    lines += [f"BROKEN    {terminal(note)}" for note in broken_notes(r)]
    lines += [f"LOW SQNR  {terminal(note)}" for note in low_sqnr_notes(r)]
    lines.append("verdict   " + VERDICTS[r.verdict])
    return for_terminal(lines)


def target_lines(t) -> list[str]:
    """--target: the prediction, the compiler's and the real delegate's word where they were here."""
    from edgeq.targets import TargetReport

    p = TargetReport.from_dict(t.prediction)
    lines = [f"target    {p.title} (predicted): {p.verdict}"]
    if t.compiler:
        lines.append("target    " + t.compiler.line())
    if t.delegate_check:
        d = t.delegate_check
        lines.append(
            f"target    real delegate took {d.actual_delegated} nodes, predicted {d.predicted_delegated}: "
            + ("agrees" if d.agrees else f"differs (kept {d.actual_kept} vs predicted {d.predicted_kept})")
        )
    lines.append(f"target    ran on {p.title}: {'yes' if t.ran_on_target else 'no'}")
    return lines


VERDICTS = {
    "PASS": "PASS",
    "FAIL": "FAIL: a gate failed",
    "NO GATES": "no gates given: nothing was checked against a limit (exit 0); gate with --min-sqnr, "
    "--min-slice-sqnr, --min-agreement, --max-drop, ...",
}
BROKEN_OUTPUT_REMEDIES = (
    "--calibration auto",
    "the accuracy search (--eval-data with --min-sqnr)",
    "--keep-float on the layers that write it",
)


def sqnr(o: OutputScore) -> str:
    return "exact match" if o.exact else f"SQNR {number(o.sqnr_db, '.2f', ' dB')}"


def slice_text(o: OutputScore) -> str:
    """The worst slice, or "" where the output has no axis to slice along."""
    w = o.worst_slice
    return f"worst slice axis {w.axis} index {w.index}: {w.sqnr_db:.2f} dB" if w else ""


def mask_text(o: OutputScore) -> str:
    """A mask's IoU (with the pixels the threshold rule decided), and its boundary F-score."""
    if o.iou is None:
        return ""
    ties = (
        f" ({o.ties} INT8 pixel(s) exactly at {o.threshold:g}; {number(o.iou_ties_out, '.4f')} with those as background)"
        if o.ties
        else ""
    )
    return f", IoU {o.iou:.4f}{ties}, boundary F-score {number(o.boundary_f, '.4f')} (within 1 pixel)"


def slice_clause(o: OutputScore) -> str:
    return f", {slice_text(o)}" if o.worst_slice else ""


def cache_lines(cache) -> list[str]:
    """What was reused from edgeq's cache, in plain words; nothing when nothing was (the manifest records it all)."""
    if cache is None:
        return []
    if cache.conversion == "hit":
        return ["reused an earlier conversion of the same model, data and options from the cache (--no-cache: anew)"]
    if cache.calibration == "hit":
        return ["reused the calibration of an earlier conversion of the same model and data from the cache (--no-cache: anew)"]
    return []


def threads(n: int | None) -> str:
    return f"{number(n, 'd')} thread{'' if n == 1 else 's'}"


def output_line(o: OutputScore) -> str:
    """One output: its role and why, its error as a whole and its worst slice."""
    agreement = (
        f"  agreement {percent(o.agreement)}"
        + (" per step" if o.role == "sequence" else " per pixel" if o.role == "mask" else "")
        + (f" at threshold {o.threshold:g}" if o.threshold is not None else "")
        + (f", sequences matching {percent(o.sequence_match)}" if o.sequence_match is not None else "")
        if o.agreement is not None
        else ""
    ) + mask_text(o)
    flag = f"  << {slice_flag(o)}" if o.slice_flagged else ""
    return (
        f"{terminal(o.name)} [{o.role}: {terminal(o.role_from or 'n/a')}]{_paired(o)}: {sqnr(o)}  cosine "
        f"{number(o.cosine, '.5f')}  "
        f"max |err| {number(o.max_abs_error)}  mean |err| {number(o.mean_abs_error)}"
        + (f"  {slice_text(o)}" if o.worst_slice else "")
        + f"{flag}{agreement}"
    )


DECISIONS_HOLD = 0.99  # a classes or sequence output whose argmax agrees this often is not called broken for its SQNR


def slice_flag(o: OutputScore) -> str:
    """Why the worst slice is flagged: far below the output as a whole, or simply below 10 dB."""
    w = o.worst_slice
    far = o.sqnr_db is not None and w is not None and w.sqnr_db < o.sqnr_db - SLICE_GAP_DB
    return "far below the output" if far else f"below {BROKEN_DB:g} dB"


def broken_notes(r: ValidationResult) -> list[str]:
    """Each output below 10 dB, whole or in a slice, named with what edgeq can do about it, unless
    its decisions hold (see low_sqnr_notes)."""
    return [
        f"output '{o.name}' ({o.role}) is likely broken: {sqnr(o)}{slice_clause(o)}; try {', '.join(BROKEN_OUTPUT_REMEDIES)}"
        for o in r.broken_outputs
        if not _decisions_hold(o)
    ]


def low_sqnr_notes(r: ValidationResult) -> list[str]:
    """An output below 10 dB whose decisions (argmax per sample or per step) still agree with
    float: the error sits in values no argmax reads (a log-softmax's unlikely classes)."""
    notes = []
    for o in (o for o in r.broken_outputs if _decisions_hold(o)):
        match = f", sequences matching {percent(o.sequence_match)}" if o.sequence_match is not None else ""
        notes.append(
            f"output '{o.name}' ({o.role}) has {sqnr(o)}{slice_clause(o)}, yet its decisions hold (agreement "
            f"{percent(o.agreement)}{' per step' if o.role == 'sequence' else ''}{match}): the error is in values no "
            f"argmax reads; if the app reads them (scores, a beam search), try {', '.join(BROKEN_OUTPUT_REMEDIES)}"
        )
    return notes


def _decisions_hold(o: OutputScore) -> bool:
    return (
        o.role in ("classes", "sequence", "mask")
        and o.agreement is not None
        and (o.iou is None or o.iou >= DECISIONS_HOLD)
        and o.agreement >= DECISIONS_HOLD
        and (o.sequence_match is None or o.sequence_match >= DECISIONS_HOLD)
    )


def metadata_text(m: ModelMetadata) -> str:
    """The TFLite Model Metadata an app's tooling reads (ML Model Binding, MediaPipe Tasks)."""
    about = ", ".join(
        f"{k} {terminal(v)}" for k, v in (("version", m.version), ("author", m.author), ("license", m.license)) if v
    )
    lines = [
        f"metadata  {terminal(m.name)}"
        + (f" ({about})" if about else "")
        + (f": {terminal(m.description)}" if m.description else "")
    ]
    for i in m.inputs:
        image = f"{i.color or 'image'} {i.width}x{i.height}, " if i.width else ""
        norm = f"(pixel - {list(i.mean)}) / {list(i.std)}" if i.mean else "no normalization"
        lines.append(f"  input   {terminal(i.name)}: {image}{norm}")
    for o in m.outputs:
        labels = m.labels if o.labels_file else None
        shown = (
            f"{len(labels)} labels in {terminal(o.labels_file)} "
            f"({terminal(', '.join(labels[:5]))}{', ...' if len(labels) > 5 else ''})"
            if labels
            else "no labels"
        )
        lines.append(f"  output  {terminal(o.name)}: {shown}")
    return for_terminal(lines)


def target_text(report) -> str:
    """A target prediction: verdict, then one line per op that does not run there."""
    lines = [f"{report.title}: {report.verdict}"]
    if report.first_unsupported_op and report.target == "edgetpu":
        first = report.first_unsupported_op
        lines.append(f"  first unsupported: op {first.index} {first.type}: {first.reason}")
    if "min_android_api" in report.extra:
        lines.append(f"  needs Android API {report.extra['min_android_api']}")
    for f in report.ops:
        if not f.on_target:
            lines.append(f"  op {f.index:<3} {f.type:<24} on {report.fallback}: {f.reason}")
    lines += [f"  note: {n}" for n in report.notes]
    return for_terminal(lines)


def dispatch_text(dispatch: Dispatch, compiled: NpuCompile | None) -> str:
    """A file compiled for an NPU: its stamp, partitions, what stays on the CPU, where it came from."""
    stamp = dispatch.stamp
    on_cpu = ", ".join(f"{terminal(k)} x{v}" for k, v in dispatch.ops_on_cpu.items()) or "none"
    lines = [
        f"npu       compiled for {terminal(stamp.vendor) if stamp else 'an unnamed vendor'}"
        + (f", SoC {terminal(stamp.soc)}" if stamp and stamp.soc else "")
        + f": {dispatch.partitions} DISPATCH_OP partition(s); ops left to the CPU: {on_cpu}"
    ]
    if compiled is not None:
        lines.append(
            f"          from {terminal(compiled.source)}: {compiled.ops_offloaded} of {compiled.ops_total} ops offloaded"
            + (f"; OpenVINO graph backend {compiled.graph_backend}" if compiled.graph_backend else "")
        )
        lines += [f"          note: {terminal(compiled.note)}"] if compiled.note else []
    return for_terminal(lines)


def streaming_lines(r: ValidationResult) -> list[str]:
    """--feedback: each output's error when both models feed their own state, beside the per-window one."""
    s = r.streaming
    if s is None:
        return []
    window = {o.name: o.sqnr_db for o in r.outputs}
    lines = [
        f"streamed  {s.sequences} sequence(s), {s.steps} steps, "
        + ", ".join(f"{terminal(o)} -> {terminal(i)}" for o, i in s.feedback.items())
        + f" ({s.note})"
    ]
    for o in s.outputs:
        drift = ", ".join(f"step {p.index}: {number(p.sqnr_db, '.1f')}" for p in o.drift)
        lines.append(
            f"          {terminal(o.name)}: SQNR {number(o.sqnr_db, '.2f', ' dB')} streamed (per window "
            f"{number(window.get(o.name), '.2f', ' dB')}), first step {number(o.first_step_sqnr_db, '.2f', ' dB')}, "
            f"end of sequence {number(o.end_sqnr_db, '.2f', ' dB')}; drift (dB) {drift}"
        )
    return lines


def accelerator_lines(d: DeviceResult) -> list[str]:
    """What an accelerator run used, by the evidence: where it ran, on what, how much of the model."""
    use = d.accelerator
    if use is None:
        return []
    on = (
        "every op"
        if use.accelerated
        else f"{number(use.ops_on_accelerator, 'd', '')} op(s) there, {use.ops_on_cpu} on the CPU"
        + (f" ({', '.join(f'{k} x{v}' for k, v in use.cpu_op_types.items())})" if use.cpu_op_types else "")
    )
    stand_in = ", a software adapter" if use.ran_on == "gpu" else ", the CPU standing in for the NPU"
    lines = [
        f"asked {use.asked}, ran on the {use.ran_on}"
        + (f" ({use.adapter}" + (stand_in if use.software else "") + ")" if use.adapter else "")
        + (f", {use.precision}" if use.precision else "")
        + (f"; {on}" if use.ran_on != "cpu" else "")
        + (f", {use.partitions} partition(s)" if use.partitions else "")
        + (f"; LiteRT's is_fully_accelerated(): {use.fully_accelerated}" if use.fully_accelerated is not None else "")
    ]
    if d.vs_local and not d.vs_local.bit_exact:
        lines += [
            f"vs the CPU run, {m.name}: {m.mismatches} of {m.elements} values differ"
            + (f", max {m.max_lsb_diff} step(s)" if m.max_lsb_diff is not None else "")
            + (
                f", max |diff| {m.max_abs_diff:.4g}, SQNR {number(m.sqnr_db, '.2f', ' dB')}"
                if m.sqnr_db is not None
                else ", not finite"
            )
            for m in d.vs_local.outputs
            if m.mismatches
        ]
    return lines + ([f"note: {d.note}"] if d.note else [])


def differs_from_local(exact: BitExactness) -> str:
    """How a device's outputs differ from the local run's: quantization steps for integer outputs,
    the largest real difference and SQNR for float ones."""
    steps = [m.max_lsb_diff for m in exact.outputs if m.max_lsb_diff is not None]
    worst = min((m.sqnr_db for m in exact.outputs if m.mismatches and m.sqnr_db is not None), default=None)
    largest = max((m.max_abs_diff for m in exact.outputs if m.max_abs_diff is not None), default=None)
    finite = all(m.sqnr_db is not None or not m.mismatches for m in exact.outputs)
    size = f"max {max(steps)} step(s)" if steps else f"max |diff| {number(largest, '.3g')}"
    return (
        f"{exact.mismatches} output values differ from local ({size}, "
        + (f"SQNR {number(worst, '.2f', ' dB')}" if finite else "not finite")
        + ")"
    )


def device_summary(d: DeviceResult) -> str:
    acc, lat, exact = d.accuracy, d.latency, d.vs_local
    if d.error:
        return f"NOT MEASURED: {d.error.removeprefix(d.name + ': ')}"
    if d.pending:
        return f"PENDING: AI Hub jobs {', '.join(d.pending)} (edgeq validate --resume RESULTS collects them)"
    parts = []
    if acc.int8_top1 is not None:
        parts.append(f"int8 top-1 {acc.int8_top1:.4f}")
    parts.append(f"agreement {number(acc.agreement, '.4f')}")
    parts.append(f"SQNR {number(d.worst_sqnr_db, '.2f', ' dB')}")
    if not d.capabilities.latency:
        use = d.accelerator
        if use is None:
            parts.append("latency: emulated, not a latency figure")
        else:
            why = {"cpu": "it ran on the CPU", "gpu": "a software adapter"}.get(use.ran_on, "a CPU stand-in")
            parts.append(f"latency: not the {use.asked.split(':')[0].upper()}'s ({why})")
    else:
        parts.append(f"int8 p50 {number(lat.int8_ms.p50, '.3f', ' ms')}, speedup {number(lat.speedup, '.2f', 'x')}")
    if exact is None:
        parts.append(d.note or "no outputs")
    else:
        parts.append("bit-exact with local" if exact.bit_exact else differs_from_local(exact))
    if d.passed is not None:
        parts.append("PASS" if d.passed else "FAIL")
    return "; ".join(parts)


def _shortened(items: list[str], shown: int = SHOWN_FLOAT_OPS) -> str:
    """The first `shown` items and how many more the manifest lists."""
    return ", ".join(items[:shown]) + (f", and {len(items) - shown} more (see the manifest)" if len(items) > shown else "")


def evaluations(search: Search) -> str:
    """'N int8 evaluations (bound B) in S s', the bound counting the search's int8 candidates; the
    calibration methods --calibration auto tried and an int16x8 try (--allow-int16x8) apart."""
    wide = sum(s.kind in (StepKind.INT16X8, StepKind.A16W8) for s in search.steps)
    methods = sum(s.phase == "calibration method" for s in search.steps)
    int8 = search.int8_evaluations if search.int8_evaluations is not None else search.evaluations - wide - methods
    took = f" in {search.seconds:.1f} s" if search.seconds is not None else ""
    return (
        f"{int8} int8 evaluation(s) (bound {search.max_evaluations})"
        + (f", {methods} calibration method(s) tried by --calibration auto" if methods else "")
        + (f" and {wide} 16-bit {'try' if wide == 1 else 'tries'}" if wide else "")
        + took
    )


def step_label(step: SearchStep) -> str:
    """What one evaluated candidate was: int16x8, a calibration method, or k float layers (and why)."""
    if step.kind == StepKind.INT16X8:
        return "int16x8 activations"
    if step.kind == StepKind.A16W8:
        return f"{len(step.int16_layers)} layer(s) at 16 bits, {step.k} float" + (f" ({step.phase})" if step.phase else "")
    if step.method:
        return f"{step.k} float layer(s), {step.method} ranges"
    return f"{step.k} float layer(s)" + (f" ({step.phase})" if step.phase else "")


def step_outputs(step: SearchStep) -> str:
    """Each output's figure in one step: SQNR, or agreement for a classes output, '*' where it misses."""
    if not step.outputs:
        return "exact match" if step.exact else f"SQNR {number(step.worst_sqnr_db, '.2f')} dB"
    parts = []
    for o in step.outputs:
        figure = "exact" if o.exact else f"{number(o.sqnr_db, '.2f')} dB"
        if o.role in ("classes", "sequence") and o.agreement is not None:
            figure += f" agreement {number(o.agreement, '.4f')}"
        parts.append(f"{terminal(o.name)} {figure}" + ("" if o.meets else "*"))
    return ", ".join(parts)


def refined_layer_lines(layers, shown: int = 3) -> list[str]:
    """--refine rounding: the layers with the largest output error as converted, before and after,
    and whether the int8 inputs or the int8 weights cause it."""
    worst = sorted(layers, key=lambda l: l.before_db)[:shown]
    if not worst:
        return []
    lines = [
        f"  layer output SQNR against the float layer on its calibration positions, the {len(worst)} worst as converted, "
        f"converted -> refined (cause: int8 inputs alone | int8 weights alone):"
    ]
    for l in worst:
        cause = "activations" if l.inputs_only_db < l.weights_only_db else "weights"
        lines.append(
            f"    {terminal(short_name(l.name))} ({l.kind}, {l.rows} positions): {l.before_db:g} -> {l.after_db:g} dB "
            f"({l.inputs_only_db:g} | {l.weights_only_db:g} dB: mostly its {cause})"
        )
    return lines


def search_lines(search: Search, again: str | None = None) -> list[str]:
    """The accuracy-budget search: what it tried, one line per evaluated model, what it chose, and
    how to make the same choice again without searching (the manifest as --recipe, whatever its size)."""
    budget = ", ".join(f"{k} {v:g}" for k, v in search.budget.items() if v is not None)
    considered = (
        f"{search.layers_considered} candidate layers (those feeding the outputs that missed)"
        if search.graph_layers is not None
        else f"{search.layers_considered} ranked layers"
    )
    held = f" (and {search.held_back_samples} held back, which confirm the choice)" if search.held_back else ""
    lines = [
        f"search: budget {budget} on {search.eval_samples} samples of {terminal(search.eval_data or 'n/a')}{held}; "
        f"{evaluations(search)} over {considered}; * misses"
    ]
    for step in search.steps:
        took = f"  {step.seconds:.2f} s" if step.seconds is not None else ""
        lines.append(
            f"  {step_label(step):<48} {step.size_bytes / 1024:,.1f} KiB  {step_outputs(step)}"
            f"  {'meets' if step.meets else 'misses'}{took}"
        )
    chosen = search.chosen
    label = _chosen_label(search)
    lines.append(f"chosen: {label}" + ("" if search.met else " (best effort: the budget is not met)"))
    if search.held_back is not None:
        confirm = search.held_back
        lines.append(
            f"  on the {search.held_back_samples} held-back samples: {step_outputs(confirm)}  "
            f"{'meets' if confirm.meets else 'misses'}; on the {search.eval_samples} it was chosen on: "
            f"{step_outputs(chosen)}  {'meets' if chosen.meets else 'misses'}"
        )
    if chosen.kind == StepKind.INT8 and 0 < len(chosen.float_layers) <= SHOWN_FLOAT_OPS * 2:
        lines.append("  by hand: " + " ".join(f"--keep-float {shell_word(n)}" for n in chosen.float_layers))
    if again is not None and (chosen.float_layers or chosen.kind != StepKind.INT8):
        lines.append(f"  again, without searching: {again}")
    return lines + [f"  note: {terminal(n)}" for n in search.notes]


def _chosen_label(search: Search) -> str:
    """What the search chose: int16x8 throughout, or its float layers (and its 16-bit ones)."""
    chosen = search.chosen
    if chosen.kind == StepKind.INT16X8:
        return "int16x8 (16-bit activations, int8 weights)"
    floats = f"{chosen.k} float layer(s)" + (f": {_shortened(_chosen_labels(search))}" if chosen.float_layers else "")
    if chosen.kind == StepKind.A16W8:
        return f"{floats}; 16-bit activations on {_shortened([short_name(n) for n in chosen.int16_layers])}"
    return floats + ("" if chosen.float_layers else " (full INT8)")


def _chosen_labels(search: Search) -> list[str]:
    by_node = {layer.node: layer for layer in search.chosen_layers}
    return [layer_label(by_node[n]) if n in by_node else short_name(n) for n in search.chosen.float_layers]


def shell_word(text: str) -> str:
    """A model's name as one shell word, safe to paste and to print."""
    return terminal(shlex.quote(text))
