"""Figures formatted one way everywhere: sizes that scale, agreement and accuracy as percentages."""

from __future__ import annotations


def number(x: float | None, fmt: str = ".4g", suffix: str = "") -> str:
    """A figure, or "n/a" where there is none: the one way edgeq prints a missing number."""
    return "n/a" if x is None else f"{x:{fmt}}{suffix}"


def size(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.{2 if unit != 'KiB' else 1}f} {unit}"
    return f"{n} B"


def percent(x: float | None) -> str:
    return number(None if x is None else 100 * x, ".2f", "%")


GATE_UNITS = {
    "max_drop": (".2f", " pts"),
    "min_sqnr": (".2f", " dB"),
    "min_iou": (".4f", ""),
    "min_slice_sqnr": (".2f", " dB"),
    "max_latency_ms": (".3f", " ms"),
    "min_speedup": (".2f", "x"),
    "max_regression_pts": (".2f", " pts"),
    "max_latency_regression": (".1f", " %"),
    "max_size_growth": (".1f", " %"),
}


def gate_figure(name: str, value: float | None) -> str:
    """A gate's limit or value in the unit the rest of the output uses for that figure."""
    if name == "min_agreement":
        return percent(value)
    fmt, unit = GATE_UNITS.get(name, (".4g", ""))
    return number(value, fmt, unit)


def gate_status(gate) -> str:
    """pass | FAIL | n/a (a gate the runner cannot serve, e.g. accuracy on a latency-only device)."""
    return {"passed": "pass", "failed": "FAIL"}.get(gate.status, "n/a")
