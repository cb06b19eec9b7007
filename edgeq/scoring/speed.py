"""INT8 against float speed, said one way everywhere: `speedup` is float p50 / INT8 p50 (above 1,
INT8 is faster), and one message says when INT8 ran slower, where (for this machine, its CPU and
whether it has int8 dot-product instructions: edgeq.host.machine), and why.
"""

from __future__ import annotations

from collections.abc import Sequence

# what may help when an op type falls off XNNPACK in int8
OFF_DELEGATE_REMEDIES = {
    "HARD_SWISH": "XNNPACK's delegate takes HARD_SWISH in float only (its VisitHardSwishNode checks for float "
    "tensors; not a matter of quantization parameters): keep it in float with --mode int8-fallback "
    "--keep-float HARD_SWISH, or use a ReLU6 variant of the model",
    "SOFTMAX": "an int8 SOFTMAX runs on built-in kernels; it is cheap unless the tensor is large",
}


def speedup(float_p50: float | None, int8_p50: float | None) -> float | None:
    """Float p50 over INT8 p50, as every speedup edgeq reports; None where a p50 is missing
    (a benchmark_model build that prints no percentiles)."""
    return round(float_p50 / int8_p50, 4) if float_p50 and int8_p50 else None


def slower_than_float(
    kind: str,
    speed: float | None,
    within_noise: bool,
    where: str,
    fell_off: dict[str, int],
    partitions: int | None,
    remedies: Sequence[str] = (),
    figures: str = "",
) -> str | None:
    """The one message for "INT8 ran slower than float": None unless `speed` (float/INT8) is below 1
    beyond the run-to-run spread. `where` names the delegate (its first word) and the machine; `figures` the p50s."""
    if speed is None or speed >= 1 or within_noise:
        return None
    why = (
        (
            f"{sum(fell_off.values())} op(s) fell off {where.split()[0]} "
            f"({', '.join(f'{k} x{v}' for k, v in fell_off.items())}), "
            f"splitting it into {partitions} partition(s)"
        )
        if fell_off
        else f"{where.split()[0]} took every op"
    )
    helps = [OFF_DELEGATE_REMEDIES[op] for op in fell_off if op in OFF_DELEGATE_REMEDIES] + list(remedies)
    return f"{kind} ran at {speed:.2f}x the float model's speed on {where} (slower{'; ' + figures if figures else ''}): {why}" + (
        f"; {'; '.join(helps)}" if helps else ""
    )
