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


def gate_figure(name: str, value: float | None) -> str:
    """A gate's limit or value in the unit the rest of the output uses for that figure."""
    return percent(value) if name == "min_agreement" else number(value)


def gate_status(gate) -> str:
    """pass | FAIL | n/a (a gate the runner cannot serve, e.g. accuracy on a latency-only device)."""
    return {"passed": "pass", "failed": "FAIL"}.get(gate.status, "n/a")
