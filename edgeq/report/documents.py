"""Reports from the results JSON of `edgeq validate`: Markdown for a pull request, one
self-contained HTML page (plots embedded as PNG) for a desk. Both are rendered from the JSON
alone, and every figure in them is formatted by the helpers below, once.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from edgeq.core.escape import md, terminal
from edgeq.core.units import gate_figure, gate_status, number
from edgeq.core.units import percent as pct
from edgeq.core.units import size as kib
from edgeq.records.manifest import StepKind
from edgeq.report.text import (
    accelerator_lines,
    broken_notes,
    differs_from_local,
    evaluations,
    low_sqnr_notes,
    short_name,
    slice_flag,
    slice_text,
    step_label,
    step_outputs,
    threads,
)
from edgeq.run.protocol import AcceleratorUse
from edgeq.scoring.gates import GateResult
from edgeq.scoring.metrics import EXACT_DB
from edgeq.validation.results import ValidationResult

LAYERS_SHOWN = 10


# -- figures, formatted once ------------------------------------------------------------------


def num(x: float | None, digits: int = 2) -> str:
    return number(x, f".{digits}f")


def ms(x: float | None) -> str:
    return number(x, ".3f", " ms")


def verdict(results: ValidationResult, marks: bool = True) -> str:
    word = {"PASS": "PASSED", "FAIL": "FAILED", "NO GATES": "NO GATES GIVEN"}[results.verdict]
    return f"{ {'PASS': '✅', 'FAIL': '❌'}.get(results.verdict, '➖') } {word}" if marks else word


def summary(results: ValidationResult, marks: bool = True) -> dict[str, str]:
    """The headline figures of both reports."""
    acc, lat, ratio = results.accuracy, results.latency, results.size.ratio
    return {
        "size reduction": f"{1 / ratio:.2f}× smaller" if ratio else "n/a",
        "top-1 drop": f"{num(acc.top1_drop_pts)} pts" if acc.top1_drop_pts is not None else "n/a (no labels)",
        "top-1 agreement": f"{pct(acc.agreement)} on {acc.output}" if acc.output else "n/a (no classes output)",
        "speedup vs float": f"{num(lat.speedup)}× ({lat.delegate}, {threads(lat.threads)}"
        + ("; no measurable difference)" if lat.within_noise else ")"),
        "verdict": verdict(results, marks),
    }


def _rows(results: ValidationResult) -> list[tuple[str, str, str, str]]:
    """(figure, float, INT8, change) rows of the comparison table."""
    size, acc, lat = results.size, results.accuracy, results.latency
    rows = [("size", kib(size.float_bytes), kib(size.int8_bytes), f"{num(size.ratio, 3)}×")]
    if acc.float_top1 is not None:
        rows.append(("top-1 accuracy", pct(acc.float_top1), pct(acc.int8_top1), f"{num(acc.top1_drop_pts)} pts drop"))
        if acc.float_topk is not None:
            rows.append((f"top-{acc.top_k} accuracy", pct(acc.float_topk), pct(acc.int8_topk), ""))
    if acc.agreement is not None:
        rows.append(("top-1 agreement with float", "", pct(acc.agreement), ""))
    rows.append(
        (
            f"latency p50 ({lat.delegate}, {threads(lat.threads)})",
            ms(lat.float_ms.p50),
            ms(lat.int8_ms.p50),
            f"{num(lat.speedup)}× speedup" + (" (no measurable difference)" if lat.within_noise else ""),
        )
    )
    rows.append(("latency p90", ms(lat.float_ms.p90), ms(lat.int8_ms.p90), ""))
    return rows


BASELINE_HEAD = ("", "baseline", "now", "change")


def _baseline_rows(results: ValidationResult) -> list[tuple[str, str, str, str]]:
    """This run against the previous results file, figure by figure."""
    b = results.baseline

    def signed(x, unit):
        return number(x, "+.2f", unit)

    return [
        (
            "INT8 top-1",
            pct(b.int8_top1),
            pct(results.accuracy.int8_top1),
            signed(None if b.regression_pts is None else -b.regression_pts, " pts"),
        ),
        ("INT8 p50 latency", ms(b.int8_p50_ms), ms(results.latency.int8_ms.p50), signed(b.latency_regression_pct, " %")),
        ("model size", kib(b.int8_bytes), kib(results.size.int8_bytes), signed(b.size_growth_pct, " %")),
    ]


def _gate_rows(gates: tuple[GateResult, ...], marks: bool = True) -> list[tuple[str, str, str, str]]:
    """`marks`: ✅/❌ (GitHub renders them); the HTML page colours plain PASS/FAIL instead."""
    rows = []
    for g in gates:
        bound = "≤" if g.name.startswith("max") else "≥"
        status = gate_status(g)
        mark = {"pass": "✅ pass", "FAIL": "❌ FAIL"}.get(status, "➖ n/a") if marks else status
        rows.append((g.description, f"{bound} {gate_figure(g.name, g.limit)}", gate_figure(g.name, g.value), mark))
    return rows


def _output_rows(results: ValidationResult) -> list[tuple[str, ...]]:
    return [
        (
            o.name,
            f"{o.role} ({o.role_from or 'n/a'})",
            "exact" if o.exact else num(o.sqnr_db),
            (slice_text(o) or "n/a") + (f" ({slice_flag(o)})" if o.slice_flagged else ""),
            pct(o.agreement),
            num(o.cosine, 5),
            number(o.max_abs_error),
            number(o.mean_abs_error),
        )
        for o in results.outputs
    ]


def _source_rows(results: ValidationResult) -> list[tuple[str, ...]]:
    return [(o.name, "exact" if o.exact else num(o.sqnr_db), number(o.max_abs_error)) for o in results.source_check.outputs]


def _layer_rows(results: ValidationResult, limit: int | None = LAYERS_SHOWN) -> list[tuple[str, ...]]:
    layers = results.per_layer.layers if results.per_layer else ()
    return [
        (
            str(l.rank),
            short_name(l.tensor_name),
            l.op_type,
            num(l.sqnr_db),
            num(l.rmse_lsb, 3),
            num(l.max_abs_error_lsb, 3),
            f"{l.scale:.6g}",
            str(l.zero_point),
            "min/max" if l.range_ratio is None else f"{l.range_ratio:.3f}",
            "0" if l.clipped_fraction is None else pct(l.clipped_fraction),
        )
        for l in layers[:limit]
    ]


DEVICE_HEAD = (
    "device",
    "transport",
    "runtime",
    "INT8 top-1",
    "agreement",
    "worst SQNR (dB)",
    "ops on the accelerator",
    "INT8 p50",
    "float p50",
    "speedup",
    "vs local INT8",
    "verdict",
)


def _share(use: AcceleratorUse | None) -> str:
    """How many of the model's ops ran on the accelerator asked for (an AI Hub phone's NPU, a GPU), by its evidence."""
    if use is None or use.ops_on_accelerator is None:
        return "n/a (CPU)" if use is None else "not reported"
    on, cpu = use.ops_on_accelerator, use.ops_on_cpu or 0
    return f"{on} on {use.asked.split(':')[0].upper()}, {cpu} on CPU ({on / (on + cpu):.0%})" if on + cpu else "no ops"


def _device_rows(results: ValidationResult, marks: bool = True) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in results.devices:
        acc, lat, exact = d.accuracy, d.latency, d.vs_local
        timed = d.capabilities.latency
        same = "latency only" if exact is None else "bit-exact" if exact.bit_exact else differs_from_local(exact)
        ok = d.passed is not False
        mark = (("✅ " if ok else "❌ ") if marks else "") + ("pass" if ok else "FAIL")
        if d.error or d.pending:
            mark = ("➖ " if marks else "") + ("pending (--resume)" if d.pending else "not measured (see the warnings)")
        rows.append(
            (
                d.name,
                d.transport,
                str(d.runtime),
                pct(acc.int8_top1),
                pct(acc.agreement),
                num(d.worst_sqnr_db),
                _share(d.accelerator),
                ms(lat.int8_ms.p50) if timed else "emulated; not a latency figure",
                ms(lat.float_ms.p50) if timed else "emulated; not a latency figure",
                f"{num(lat.speedup)}×" if timed else "n/a",
                same,
                mark,
            )
        )
    return rows


SEARCH_HEAD = ("candidate", "size", "outputs (* misses)", "seconds", "budget")


def _search_rows(results: ValidationResult, marks: bool = True) -> list[tuple[str, ...]]:
    ok, bad = ("✅ meets", "❌ misses") if marks else ("meets", "misses")
    return [
        (step_label(s), kib(s.size_bytes), step_outputs(s), num(s.seconds), ok if s.meets else f"{bad}: {'; '.join(s.missed)}")
        for s in results.conversion_search.steps
    ]


def _search_caption(results: ValidationResult) -> str:
    search = results.conversion_search
    chosen = search.chosen
    budget = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in search.budget.items() if v is not None)
    kept = (
        "none: 16-bit activations (int16x8)"
        if chosen.kind == StepKind.INT16X8
        else (", ".join(short_name(n) for n in chosen.float_layers) or "none")
        + "; 16-bit activations on "
        + ", ".join(short_name(n) for n in chosen.int16_layers)
        if chosen.kind == StepKind.A16W8
        else ", ".join(short_name(n) for n in chosen.float_layers) or "none (full INT8)"
    )
    held = f" (confirmed on {search.held_back_samples} held back)" if search.held_back else ""
    return (
        f"Budget {budget} on {search.eval_samples} samples{held}; {evaluations(search)} over "
        f"{search.layers_considered} candidate layers. Chosen: {chosen.k} float "
        f"layer(s): {kept}" + ("" if search.met else " — best effort, the budget is not met") + "."
    )


OUTPUT_HEAD = ("output", "role (evidence)", "SQNR (dB)", "worst slice", "agreement", "cosine", "max abs error", "mean abs error")
LAYER_HEAD = (
    "rank",
    "layer (tensor)",
    "op",
    "SQNR (dB)",
    "RMSE (LSB)",
    "max abs error (LSB)",
    "scale",
    "zero-point",
    "range (chosen / min-max)",
    "calibration values clipped",
)


# -- Markdown ---------------------------------------------------------------------------------


def _environment(autoescape: bool, finalize):
    """Templates in edgeq/report/templates; `finalize` is the format's one escaper, applied by
    Jinja to every value a template shows."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("edgeq.report", "templates"),
        autoescape=autoescape,
        finalize=finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _context(results: ValidationResult, marks: bool) -> dict:
    """What both documents show, as rows of plain (unescaped) text."""
    pl, search = results.per_layer, results.conversion_search
    return {
        "s": summary(results, marks),
        "rows": _rows(results),
        "gate_head": ("gate", "limit", "value", "result"),
        "model": Path(results.model).name,
        "reference": Path(results.reference).name,
        "data": results.data or "n/a",
        "baseline": results.baseline
        and {"name": Path(results.baseline.path).name, "head": BASELINE_HEAD, "rows": _baseline_rows(results)},
        "gates": _gate_rows(results.gates, marks),
        "source": results.source_check
        and {"reference": results.source_check.reference, "samples": results.source_check.samples, "rows": _source_rows(results)},
        "output_head": OUTPUT_HEAD,
        "outputs": _output_rows(results),
        "broken": broken_notes(results),
        "low": low_sqnr_notes(results),
        "device_head": DEVICE_HEAD,
        "devices": results.devices
        and {
            "rows": _device_rows(results, marks),
            "lines": [(d.name, line) for d in results.devices for line in accelerator_lines(d)],
            "gates": [(d.name, _gate_rows(d.gates, marks)) for d in results.devices if d.gates],
        },
        "search": search and {"caption": _search_caption(results), "head": SEARCH_HEAD, "rows": _search_rows(results, marks)},
        "per_layer": pl
        and {
            "shown": min(LAYERS_SHOWN, len(pl.layers)),
            "total": len(pl.layers),
            "head": LAYER_HEAD,
            "caption": f"Ranked by {pl.ranked_by}; {pl.calibration}; {pl.debug_samples} debug samples; "
            f"{pl.method or 'QuantizationDebugger'}.",
            "ranked_by": pl.ranked_by,
            "calibration": pl.calibration,
            "debug_samples": pl.debug_samples,
            "rows": _layer_rows(results),
            "all_rows": _layer_rows(results, None),
        },
        "warnings": results.warnings,
    }


def markdown(results: ValidationResult) -> str:
    return _environment(False, md).get_template("report.md.j2").render(_context(results, marks=True))


# -- HTML -------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(results: ValidationResult) -> dict[str, str]:
    """The report's charts as PNG data URIs (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {}
    lat = results.latency
    timed = {"float": list(lat.float_ms.samples), "INT8": list(lat.int8_ms.samples)}
    if any(timed.values()):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = [n for n, v in timed.items() if v]
        unit, factor = ("µs", 1000.0) if max(max(v) for v in timed.values() if v) < 1 else ("ms", 1.0)
        parts = ax.violinplot([[t * factor for t in timed[n]] for n in names], orientation="horizontal", showmedians=True)
        bodies: Any = parts["bodies"]  # matplotlib's PolyCollections
        for body, color in zip(bodies, ("#8899aa", "#2a7ab9")):
            body.set_facecolor(color)
        ax.set_yticks(range(1, len(names) + 1), names)
        ax.set_xlabel(f"latency per invoke ({unit}), {lat.delegate}, {threads(lat.threads)}, {lat.runs} runs")
        ax.set_title("Latency distribution: float vs INT8")
        ax.grid(axis="x", alpha=0.3)
        charts["latency.png"] = _png(fig)
        plt.close(fig)
    layers = results.per_layer.layers if results.per_layer else ()
    shown = [l for l in layers if l.sqnr_db is not None and l.sqnr_db < EXACT_DB][:20]
    if shown:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
        labels = [f"{short_name(l.op_type)} {short_name(l.tensor_name)}" for l in shown]
        bars = ax.barh(range(len(shown)), [l.sqnr_db for l in shown], color="#c0504d")
        ax.bar_label(bars, fmt="%.1f", padding=3, fontsize=8)
        ax.set_yticks(range(len(shown)), labels, fontsize=8)
        ax.invert_yaxis()
        exact = len(layers) - len([l for l in layers if l.sqnr_db is not None and l.sqnr_db < EXACT_DB])
        ax.set_xlabel(
            "SQNR (dB), lower is worse" + (f"; {exact} layer(s) with no error (≥ {EXACT_DB:g} dB) not drawn" if exact else "")
        )
        ax.set_title("Per-layer quantization error, worst first")
        ax.grid(axis="x", alpha=0.3)
        charts["per_layer.png"] = _png(fig)
        plt.close(fig)
    ranges = results.per_layer.calibration_ranges if results.per_layer else ()
    if ranges:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(ranges) + 1.2))
        rows = range(len(ranges))
        ax.barh(
            rows,
            [r.minmax[1] - r.minmax[0] for r in ranges],
            left=[r.minmax[0] for r in ranges],
            color="#d9d9d9",
            label="min/max",
        )
        ax.barh(
            rows,
            [r.chosen[1] - r.chosen[0] for r in ranges],
            left=[r.chosen[0] for r in ranges],
            height=0.45,
            color="#2a7ab9",
            label="chosen",
        )
        ax.set_yticks(list(rows), [short_name(r.tensor, 40) for r in ranges], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("activation range")
        ax.set_title("Chosen ranges against min/max (most clipped first)")
        ax.legend(loc="lower right")
        charts["ranges.png"] = _png(fig)
        plt.close(fig)
    return charts


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.cards{display:flex;gap:.8em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;min-width:150px}
.card b{display:block;font-size:1.3em}.pass b{color:#1a7f37}.fail{background:#fdecea;border-color:#d1242f}.fail b{color:#d1242f}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.3em .7em;text-align:left}
th{background:#f6f8fa}tr.failed td{background:#fdecea;font-weight:600}code{background:#f6f8fa;padding:0 .3em}
img{max-width:100%}.warn{color:#9a6700}
"""


def html_page(results: ValidationResult) -> str:
    from markupsafe import Markup

    context = _context(results, marks=False)
    context.update(
        model_path=results.model,
        reference_path=results.reference,
        data=str(results.data),
        style=Markup(STYLE),
        state={"PASS": " pass", "FAIL": " fail"}.get(results.verdict, ""),
        charts=plots(results),
        version=str(results.edgeq_version),
        gate_classes=["failed" if g.failed else "" for g in results.gates],
        output_classes=["failed" if o.broken else "" for o in results.outputs],
        device_classes=["failed" if d.passed is False else "" for d in results.devices],
    )

    def shown(value: object) -> object:  # markup as it is; text with its invisible characters shown, then autoescaped
        return value if isinstance(value, Markup) else terminal(value)

    return _environment(True, shown).get_template("report.html.j2").render(context)


def render(results: ValidationResult, fmt: str) -> str:
    return markdown(results) if fmt == "md" else html_page(results)
