"""Plain-text rendering for the terminal. The library returns data; only this module formats it."""

from __future__ import annotations

from edgeq.escape import terminal
from edgeq.inspection import ModelSummary, TensorInfo

SHOWN_FLOAT_OPS = 8


def _kib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024:,.1f} KiB"


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
                t = TensorInfo(**{k: port[k] for k in ("name", "shape", "dtype", "scale", "zero_point")})
                lines.append(f"  {terminal(port['key'])} ->" + _tensor_line(t)[1:] + f"  (tensor {port['index']})")
    return lines


def summary_text(s: ModelSummary) -> str:
    lines = [f"{s.path}: {_kib(s.bytes)}, {s.ops_total} ops, {s.ops_int8} on int8 kernels"]
    if s.size_ratio is not None:
        lines.append(f"size vs float: {s.size_ratio:.3f}x of {_kib(s.float_bytes)} ({s.float_bytes_source})")
    lines += _io_lines(s)
    lines.append("ops:")
    for op, c in s.op_census.items():
        kinds = ", ".join(f"{c[k]} {k}" for k in ("int8", "int16", "float") if c.get(k))
        lines.append(f"  {terminal(op):<24} {c['count']:>4}" + (f"  ({kinds})" if kinds else ""))
    lines.append("tensors: " + ", ".join(f"{k} {v}" for k, v in s.dtype_census.items()))
    w = s.weights
    lines.append(
        f"weights: {w['per_channel']} per-channel, {w['per_tensor']} per-tensor, {w['float']} float; "
        f"{_kib(w['weight_bytes'])} of {_kib(s.bytes)} is constant data"
    )
    if s.float_ops:
        lines.append(f"float ops ({len(s.float_ops)}): " + ", ".join(f"{terminal(o['type'])}#{o['index']}" for o in s.float_ops))
    else:
        lines.append("float ops: none")
    lines += [f"note: {terminal(n)}" for n in s.notes]
    return "\n".join(lines)


def conversion_text(result) -> str:
    m = result.manifest
    sizes = m["sizes"]
    ratio = f" ({sizes['ratio']:.3f}x the float model's {_kib(sizes['float_bytes'])})" if sizes["ratio"] else ""
    lines = [f"wrote {result.output}: {_kib(sizes['model_bytes'])}{ratio}", f"manifest: {result.manifest_path}"]
    if m["calibration"]:
        c = m["calibration"]
        lines.append(f"calibrated on {c['samples']} samples from {c['data']}")
    lines.append(f"{m['ops_int8']} of {m['ops_total']} ops on int8 kernels; mode {m['options']['mode']}, io {m['options']['io']}")
    lines += _io_lines(result.summary)
    if m.get("search"):
        lines += search_lines(m["search"])
    for name, count in (m.get("keep_float") or {}).get("per_name", {}).items():
        lines.append(f"keep-float {terminal(name)}: {count} node(s) kept in float")
    if m["float_ops"]:
        shown = [f"{o['type']} ({terminal(o['outputs'][0])})" for o in m["float_ops"][:SHOWN_FLOAT_OPS]]
        more = len(m["float_ops"]) - len(shown)
        lines.append(f"left in float ({len(m['float_ops'])}): " + ", ".join(shown) + (f", and {more} more (see the manifest)" if more else ""))
    return "\n".join(lines)


def _paired(output: dict) -> str:
    """The reference tensor an output was compared with, where its name differs."""
    ref = output.get("reference_name")
    return f" (vs reference {terminal(ref)})" if ref and ref != output["name"] else ""


def _num(value, fmt: str = ".4g", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{suffix}"


def _preprocessing_lines(pre: dict | None) -> list[str]:
    if not pre:
        return []
    origins: dict[str, list[str]] = {}
    for name, origin in pre["from"].items():
        origins.setdefault(origin, []).append(name.replace("value_range", "range"))
    return [f"preprocessing {pre['used']}  (" + "; ".join(f"{', '.join(v)} from {k}" for k, v in origins.items()) + ")"]


def validation_text(r: dict) -> str:
    size, acc, lat = r["size"], r["accuracy"], r["latency"]
    lines = [
        terminal(f"{r['model']} vs {r['reference']} on {r['data']}"),
        *_preprocessing_lines(r.get("preprocessing")),
        f"size      float {_kib(size['float_bytes'])}  int8 {_kib(size['int8_bytes'])}  ratio {size['ratio']:.3f}x",
    ]
    if acc["labelled"]:
        lines.append(
            f"accuracy  float top-1 {acc['float_top1']:.4f}  int8 top-1 {acc['int8_top1']:.4f}  "
            f"drop {acc['top1_drop_pts']:.2f} pts  (top-{acc['top_k']}: {acc['float_topk']:.4f} / {acc['int8_topk']:.4f})"
        )
    lines.append(f"agreement {_num(acc['agreement'], '.4f')} (top-1, int8 vs float)")
    for o in r["outputs"]:
        lines.append(
            f"output    {terminal(o['name'])}{_paired(o)}: SQNR {_num(o['sqnr_db'], '.2f', ' dB')}  cosine {_num(o['cosine'], '.5f')}  "
            f"max |err| {_num(o['max_abs_error'])}  mean |err| {_num(o['mean_abs_error'])}"
        )
    lines.append(
        f"latency   {lat['delegate']}, {lat['threads']} thread(s), {lat['runs']} runs: "
        f"int8 p50 {lat['int8_ms']['p50']:.3f} ms  float p50 {lat['float_ms']['p50']:.3f} ms  "
        f"speedup {_num(lat['speedup'], '.2f', 'x')}"
    )
    kept = ", ".join(f"{k} x{v}" for k, v in lat["cpu_fallback_ops"].items()) or "none"
    lines.append(f"delegate  took {lat['delegated_nodes']} of {lat['total_nodes']} nodes; on built-in kernels: {kept}")
    t = r.get("target")
    if t:
        p = t["prediction"]
        lines.append(f"target    {p['title']} (predicted): {p['verdict']}")
        if t.get("compiler"):
            c = t["compiler"]
            lines.append(f"target    edgetpu_compiler {c['version'] or '(version not printed)'}: {c['ops_on_edgetpu']} ops on the Edge TPU, "
                         f"{c['ops_on_cpu']} on the CPU; " + ("agrees with the prediction" if c["comparison"]["agrees"] else
                                                             f"differs: {c['comparison']['differences']}"))
        if t.get("delegate_check"):
            d = t["delegate_check"]
            lines.append(f"target    real delegate took {d['actual_delegated']} nodes, predicted {d['predicted_delegated']}: "
                         + ("agrees" if d["agrees"] else f"differs (kept {d['actual_kept']} vs predicted {d['predicted_kept']})"))
        lines.append(f"target    ran on {p['title']}: {'yes' if t['ran_on_target'] else 'no'}")
    for d in r.get("devices", []):
        lines.append(f"device    {terminal(d['name'])} ({d['transport']}, {d['runtime']}, {d['machine']}): {device_summary(d)}")
    for g in r["gates"]:
        mark = "PASS" if g["passed"] else "FAIL"
        lines.append(f"gate      {mark} {g['name']}: {_num(g['value'])} (limit {g['limit']:g})")
    lines.append("verdict   " + ("PASS" if r["passed"] else "FAIL: a gate failed"))
    return "\n".join(lines)


def target_text(report) -> str:
    """A target prediction: verdict, then one line per op that does not run there."""
    lines = [f"{report.title}: {report.verdict}"]
    if report.first_unsupported_op and report.target == "edgetpu":
        first = report.first_unsupported_op
        lines.append(f"  first unsupported: op {first['index']} {first['type']}: {first['reason']}")
    if "min_android_api" in report.extra:
        lines.append(f"  needs Android API {report.extra['min_android_api']}")
    for f in report.ops:
        if not f.on_target:
            lines.append(f"  op {f.index:<3} {f.type:<24} on {report.fallback}: {f.reason}")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def device_summary(d: dict) -> str:
    acc, lat, exact = d["accuracy"], d["latency"], d["vs_local"]
    parts = []
    if acc.get("int8_top1") is not None:
        parts.append(f"int8 top-1 {acc['int8_top1']:.4f}")
    parts.append(f"agreement {_num(acc.get('agreement'), '.4f')}")
    parts.append(f"SQNR {_num(d.get('worst_sqnr_db'), '.2f', ' dB')}")
    if d.get("emulated"):
        parts.append("latency: emulated, not a latency figure")
    else:
        key = "p50" if lat["int8_ms"].get("p50") is not None else "mean"
        parts.append(f"int8 {key} {lat['int8_ms'][key]:.3f} ms, speedup {_num(lat.get('speedup'), '.2f', 'x')}")
    if exact is None:
        parts.append(d.get("note", "no outputs"))
    else:
        parts.append("bit-exact with local" if exact["bit_exact"] else
                     f"{exact['mismatches']} output values differ from local (max {exact['max_lsb_diff']} LSB)")
    if "passed" in d:
        parts.append("PASS" if d["passed"] else "FAIL")
    return "; ".join(parts)


def evaluations(search: dict) -> str:
    """'N evaluations (bound B)', the bound counting the int8 mixes only, and the int16x8 try apart."""
    int8 = search.get("int8_evaluations", search["evaluations"])
    wide = search["evaluations"] - int8
    return f"{int8} int8 evaluation(s) (bound {search['max_evaluations']})" + (f" and {wide} int16x8 try" if wide else "")


def search_lines(search: dict) -> list[str]:
    """The accuracy-budget search, one line per evaluated model."""
    budget = ", ".join(f"{k} {v:g}" for k, v in search["budget"].items() if v is not None)
    lines = [f"search: budget {budget} on {search['eval_samples']} samples of {terminal(search['eval_data'])}; "
             f"{evaluations(search)} over {search['layers_considered']} ranked layers"]
    for step in search["steps"]:
        mark = "meets" if step["meets"] else "misses: " + "; ".join(step["missed"])
        what = "int16x8 activations" if step["kind"] == "int16x8" else f"{step['k']:>3} float layer(s)"
        lines.append(f"  {what}  {step['size_bytes'] / 1024:,.1f} KiB  top-1 drop {_num(step['top1_drop_pts'], '.2f')} pts  "
                     f"agreement {_num(step['agreement'], '.4f')}  SQNR {_num(step['worst_sqnr_db'], '.2f')} dB  {mark}")
    chosen = search["chosen"]
    label = "int16x8 (16-bit activations, int8 weights)" if chosen["kind"] == "int16x8" else (
        f"{chosen['k']} float layer(s)" + (f": {', '.join(chosen['float_layers'])}" if chosen["float_layers"] else " (full INT8)"))
    lines.append(f"chosen: {label}"
                 + ("" if search["met"] else " (best effort: the budget is not met)"))
    return lines
