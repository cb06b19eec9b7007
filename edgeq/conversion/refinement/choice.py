"""Refinement after quantization (--refine): which refiner runs, and `auto`'s choice among them
and the model as converted. The refiners are a registry: a method is a key of REFINERS, and the
recipe's names (edgeq.records.recipe.REFINEMENTS) are "none", these keys and "auto"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edgeq.conversion.options import ConvertOptions
from edgeq.conversion.refinement.bias import bias_corrected
from edgeq.conversion.refinement.rounding import rounded
from edgeq.core.errors import UsageError
from edgeq.host.isolation import step
from edgeq.host.machine import cores
from edgeq.records.manifest import Refinement, Search, StepKind
from edgeq.run.cluster import each
from edgeq.scoring.held_back import gain
from edgeq.tflite.model import parse_tflite
from edgeq.tflite.signatures import calibrator_order

# method -> refiner(quantized, float model, samples, threads) -> (refined bytes, record)
REFINERS: dict[str, Callable[[bytes, bytes, list, int], tuple[bytes, Refinement]]] = {"bias": bias_corrected, "rounding": rounded}

REFINE_SAMPLES = 64  # calibration samples whose float activations give the layers' input means
HELD_BACK = 16  # --refine auto: of those, the last ones judge instead


def refined(model: bytes, quantized: bytes, specs, options: ConvertOptions, data: Path) -> tuple[bytes, Refinement]:
    """--refine bias|rounding: the refined model. auto: bias and rounding fitted on the calibration
    samples (all but the 16 last without a budget) and judged, with the model as converted, on
    samples none was fitted on (--eval-data with a budget, else those 16), by worst-output SQNR
    against the calibrated float graph and, where outputs decide, by their agreement with its
    decisions. The best is taken only when it beats the model as converted beyond what the judging
    samples can tell (a paired bootstrap's interval not below zero) and its decisions do not agree
    with float's surely less often: auto never takes a refinement that may have made the model
    worse. The recipe records the method kept, so it gives the same bytes."""
    from edgeq.conversion.search.latency import powers_scorer

    order = calibrator_order(parse_tflite(model), [p.name for p in specs])
    samples = [[s[k] for k in order] for s in options.recipe.open(data, list(specs), min(options.recipe.samples, REFINE_SAMPLES))]
    threads = options.calibration_jobs(cores(), len(model))
    if options.recipe.refine != "auto":
        return refinement(options.recipe.refine, quantized, model, samples, threads)
    if options.budget is not None:  # judged on --eval-data, as the search judges
        judging = [[s[k] for k in order] for s in options.eval_samples(list(specs))[0]]
        where, fitted = f"the {len(judging)} --eval-data samples, each fitted on the calibration samples", samples
    else:
        if len(samples) <= HELD_BACK:
            raise UsageError(
                f"--refine auto judges on {HELD_BACK} held-back calibration samples and needs more than that; "
                f"{len(samples)} given: give more samples or choose --refine bias or rounding"
            )
        judging, fitted = samples[-HELD_BACK:], samples[:-HELD_BACK]
        where = f"{HELD_BACK} held-back calibration samples, each fitted on the other {len(fitted)}"
    candidates = [(quantized, Refinement("none", 0, 0, 0.0))]
    candidates += each(options.cluster, "refinement fits", refinement, tuple(REFINERS), (quantized, model, fitted, threads))
    score = powers_scorer(model, judging, options.output_roles)
    powers = [score(m) for m, _ in candidates]
    gains = [gain(powers[0], p) for p in powers[1:]]
    best = max(range(len(gains)), key=lambda i: (gains[i].db, -i))
    method = candidates[best + 1][1].method if gains[best].sure else "none"
    shown = "; ".join(f"{r.method} {g.describe()}" for (_, r), g in zip(candidates[1:], gains))
    as_converted = f"{float(powers[0].worst_db()[0]):.2f} dB"
    if powers[0].agreed is not None:
        as_converted += f", {float(powers[0].worst_agreement()[0]):.2f}% of its decisions as float's"
    unsure = f" ({candidates[best + 1][1].method}'s gain is within what {len(judging)} samples can tell)"
    kept_what = method if method != "none" else "the model as converted" + (unsure if gains[best].db > 0 else "")
    figures = "worst-output SQNR" + (" and the worst agreement of the deciding outputs" if powers[0].agreed is not None else "")
    judged = (
        f"auto: {figures} against the calibrated float graph on {where}: as converted {as_converted}; "
        f"gain of {shown}; kept {kept_what}"
    )
    if method == "none":
        return quantized, replace(candidates[1][1], method="none", judged=judged)
    kept, record = candidates[best + 1] if fitted is samples else refinement(method, quantized, model, samples, threads)
    return kept, replace(record, judged=judged + ("" if fitted is samples else ", fitted again on all"))


def refined_search(search: Search, refinement: Refinement) -> tuple[Search, Refinement | None]:
    """The search ran with the refined model as its all-INT8 candidate (its first step): say what that decided.
    The refinement stands when that candidate was chosen; otherwise (None) the chosen model, built
    without it, is refined after."""
    first = search.steps[0] if search.steps else None
    all_int8 = search.met and search.chosen.kind == StepKind.INT8 and not search.chosen.float_layers
    if refinement.method == "none" or first is None:  # auto kept the model as converted
        return search, refinement if all_int8 else None
    if all_int8:
        note = (
            f"the refined all-INT8 model met the budget (--refine {refinement.method}, worst output "
            f"{search.chosen.worst_sqnr_db} dB): no layer is kept in float, which on NPUs and the Edge TPU keeps the graph whole"
        )
        return replace(search, notes=search.notes + (note,)), refinement
    note = (
        f"the refined all-INT8 model (--refine {refinement.method}) reached {first.worst_sqnr_db} dB, short of the "
        f"budget: the layers kept in float were chosen without refinement, and that model is refined after"
    )
    return replace(search, notes=search.notes + (note,)), None


def refinement(method: str, quantized: bytes, model: bytes, samples, threads: int) -> tuple[bytes, Refinement]:
    """`quantized` refined by `method` (a key of REFINERS), fitted on `samples` against the float `model`."""
    step(f"refining ({method})")
    return REFINERS[method](quantized, model, samples, threads)
