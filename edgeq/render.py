"""Plain-text rendering for the terminal. The library returns data; only this module formats it."""

from __future__ import annotations

from edgeq.inspection import ModelSummary, TensorInfo


def _kib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024:,.1f} KiB"


def _tensor_line(t: TensorInfo) -> str:
    quant = f"  scale={t.scale:.6g} zero_point={t.zero_point}" if t.scale is not None else ""
    return f"  {t.name}  {t.dtype}{list(t.shape)}{quant}"


def summary_text(s: ModelSummary) -> str:
    lines = [f"{s.path}: {_kib(s.bytes)}, {s.ops_total} ops, {s.ops_int8} on int8 kernels"]
    if s.size_ratio is not None:
        lines.append(f"size vs float: {s.size_ratio:.3f}x of {_kib(s.float_bytes)} ({s.float_bytes_source})")
    lines.append("inputs:")
    lines += [_tensor_line(t) for t in s.inputs]
    lines.append("outputs:")
    lines += [_tensor_line(t) for t in s.outputs]
    lines.append("ops:")
    for op, c in s.op_census.items():
        kinds = ", ".join(f"{c[k]} {k}" for k in ("int8", "int16", "float") if c.get(k))
        lines.append(f"  {op:<24} {c['count']:>4}" + (f"  ({kinds})" if kinds else ""))
    lines.append("tensors: " + ", ".join(f"{k} {v}" for k, v in s.dtype_census.items()))
    w = s.weights
    lines.append(
        f"weights: {w['per_channel']} per-channel, {w['per_tensor']} per-tensor, {w['float']} float; "
        f"{_kib(w['weight_bytes'])} of {_kib(s.bytes)} is constant data"
    )
    if s.float_ops:
        lines.append(f"float ops ({len(s.float_ops)}): " + ", ".join(f"{o['type']}#{o['index']}" for o in s.float_ops))
    else:
        lines.append("float ops: none")
    lines += [f"note: {n}" for n in s.notes]
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
    lines.append("inputs:")
    lines += [_tensor_line(t) for t in result.summary.inputs]
    lines.append("outputs:")
    lines += [_tensor_line(t) for t in result.summary.outputs]
    if m["float_ops"]:
        lines.append(f"left in float ({len(m['float_ops'])}): " + ", ".join(f"{o['type']} ({o['outputs'][0]})" for o in m["float_ops"]))
    return "\n".join(lines)
