"""What this machine has, as the figures edgeq prints need it said: the cores a run may use, and
the CPU a latency was measured on, with its int8 dot-product instructions.

A latency measured here says something about a phone only when this CPU has int8 dot-product
instructions (x86 VNNI or AMX, ARM `asimddp`/i8mm): without them XNNPACK's INT8 is no faster than
float, while ARM dot-product devices run it well ahead. Every local latency figure names the CPU."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache

# /proc/cpuinfo flags that give XNNPACK fast int8 dot products, by the name users know them by
DOT_PRODUCT_FLAGS = (
    ("amx_int8", "AMX"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("i8mm", "i8mm"),
    ("asimddp", "asimddp"),
)


@dataclass(frozen=True)
class Cpu:
    """This machine's CPU as a latency figure needs it named."""

    name: str
    int8_dot: str | None  # the dot-product instructions it has, e.g. "AVX-512 VNNI"; None: none

    def describe(self) -> str:
        if self.int8_dot:
            return f"{self.name}, with int8 dot-product instructions ({self.int8_dot})"
        return (
            f"{self.name}, without int8 dot-product instructions: INT8's speed here says little of ARM "
            "dot-product devices (asimddp) and x86 CPUs with VNNI, where int8 runs well ahead of float"
        )


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


def cores() -> int:
    """The cores this process may run on (its affinity, e.g. a CI container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
