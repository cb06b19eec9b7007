"""INT8 against float speed, said one way everywhere: `speedup` is float p50 / INT8 p50 (above 1,
INT8 is faster), and one message says when INT8 ran slower, where, on which CPU, and why.

A latency measured on this machine says something about a phone only when this CPU has int8
dot-product instructions (x86 VNNI or AMX, ARM `asimddp`/i8mm): without them XNNPACK's INT8 is no
faster than float, while ARM dot-product devices run it well ahead. Every local figure names it.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache

# /proc/cpuinfo flags that give XNNPACK fast int8 dot products, by the name users know them by
DOT_PRODUCT_FLAGS = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                     ("i8mm", "i8mm"), ("asimddp", "asimddp"))

# what may help when an op type falls off XNNPACK in int8
REMEDIES = {
    "HARD_SWISH": "XNNPACK's delegate takes HARD_SWISH in float only (its VisitHardSwishNode checks for float "
                  "tensors; not a matter of quantization parameters): keep it in float with --mode int8-fallback "
                  "--keep-float HARD_SWISH, or use a ReLU6 variant of the model",
    "SOFTMAX": "an int8 SOFTMAX runs on built-in kernels; it is cheap unless the tensor is large",
}


def speedup(float_p50: float | None, int8_p50: float | None) -> float | None:
    """Float p50 over INT8 p50, as every speedup edgeq reports; None where a p50 is missing
    (a benchmark_model build that prints no percentiles)."""
    return round(float_p50 / int8_p50, 4) if float_p50 and int8_p50 else None


@dataclass(frozen=True)
class Cpu:
    """This machine's CPU as a latency figure needs it named."""

    name: str
    int8_dot: str | None  # the dot-product instructions it has, e.g. "AVX-512 VNNI"; None: none

    def describe(self) -> str:
        if self.int8_dot:
            return f"{self.name}, with int8 dot-product instructions ({self.int8_dot})"
        return (f"{self.name}, without int8 dot-product instructions, where INT8 is no faster than float: "
                "ARM dot-product devices (asimddp) and x86 CPUs with VNNI differ")


def cpu_of(cpuinfo: str, machine: str) -> Cpu:
    """The CPU named in a /proc/cpuinfo text, and its int8 dot-product support."""
    name, flags = machine, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and name == machine and value.strip():
            name = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    found = [label for flag, label in DOT_PRODUCT_FLAGS if flag in flags]
    return Cpu(name, ", ".join(found) or None)


@lru_cache(maxsize=1)
def this_cpu() -> Cpu:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    return cpu_of(text, platform.machine() or "unknown CPU")


def slower_than_float(kind: str, speed: float | None, within_noise: bool, where: str, fell_off: dict[str, int],
                      partitions: int | None, remedies: list[str] = (), figures: str = "") -> str | None:
    """The one message for "INT8 ran slower than float": None unless `speed` (float/INT8) is below 1
    beyond the run-to-run spread. `where` names the delegate and machine; `figures` the p50s."""
    if speed is None or speed >= 1 or within_noise:
        return None
    why = (f"{sum(fell_off.values())} op(s) fell off {where.split()[0]} ({', '.join(f'{k} x{v}' for k, v in fell_off.items())}), "
           f"splitting it into {partitions} partition(s)") if fell_off else f"{where.split()[0]} took every op"
    helps = [REMEDIES[op] for op in fell_off if op in REMEDIES] + list(remedies)
    return (f"{kind} ran at {speed:.2f}x the float model's speed on {where} (slower{'; ' + figures if figures else ''}): {why}"
            + (f"; {'; '.join(helps)}" if helps else ""))
