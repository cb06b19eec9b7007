"""Mixed precision under an accuracy budget: the fewest layers kept in float that meet it.

Full INT8 is evaluated first; if it misses the budget, the layers are ranked by their own
quantization error (QuantizationDebugger, see edgeq.conversion.debugger) and the ranked list is searched
by bisection for the shortest prefix that, kept in float (denylisted nodes of the quantizer),
meets the budget: at most ceil(log2 L) + 2 evaluations for L ranked layers (full INT8, the
upper bound, then the bisection). Bisection assumes that keeping more of the worst layers in
float never hurts, which holds for the error each layer adds; a non-monotonic model can make
it settle on a longer prefix than needed, never on one that misses the budget.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeq.errors import UsageError
from edgeq.gates import Figures, evaluate
from edgeq.metrics import Scorer
from edgeq.roles import decide_roles
from edgeq.progress import report
from edgeq.run.litert import LiteRTRunner
from edgeq.tflite.model import parse_tflite
from edgeq.tflite.signatures import positions

DEBUG_SAMPLES = 32


@dataclass(frozen=True)
class Budget:
    max_drop: float | None = None  # top-1 points, needs labels
    min_agreement: float | None = None
    min_sqnr: float | None = None  # dB, worst output

    def __post_init__(self) -> None:
        if self.max_drop is None and self.min_agreement is None and self.min_sqnr is None:
            raise UsageError("--eval-data needs a budget: --max-drop PTS, --min-agreement FRAC or --min-sqnr DB")

    def missed(self, scores: dict[str, Any]) -> list[str]:
        """What a model's scores miss; empty when it meets the budget (the gates of the same names decide)."""
        limits = {name: limit for name, limit in asdict(self).items() if limit is not None}
        return [MISSED[r.name](_fmt(r.value, 4 if r.name == "min_agreement" else 2), r.limit)
                for r in evaluate(limits, Figures.of(scores)) if r.failed]

    def quality(self, scores: dict[str, Any]) -> float:
        """Higher is better, on the budget's first criterion: picks the best of models that all miss."""
        acc = scores["accuracy"]
        if self.max_drop is not None:
            return -(acc["top1_drop_pts"] if acc["top1_drop_pts"] is not None else math.inf)
        if self.min_agreement is not None:
            return acc["agreement"] or 0.0
        return scores["worst_sqnr_db"] if scores["worst_sqnr_db"] is not None else -math.inf


MISSED = {"max_drop": "top-1 drop {} pts > {:g}".format, "min_agreement": "agreement {} < {:g}".format,
          "min_sqnr": "SQNR {} dB < {:g}".format}


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


class Evaluator:
    """Scores candidate models on the eval samples against the float (calibrated) model."""

    def __init__(self, calibrated: bytes, samples: list[list[np.ndarray]], names: list[str], labels: list[int] | None,
                 budget: Budget, roles: dict[str, str] | None = None, class_count: int | None = None):
        """`samples`: arrays in the order of the input keys `names`; fed by key to every candidate."""
        if budget.max_drop is not None and labels is None:
            raise UsageError("--max-drop needs labelled --eval-data (class folders, or y in a .npz); use --min-agreement")
        self.labels, self.budget, self.evaluations = labels, budget, 0
        self.tmp = tempfile.TemporaryDirectory(prefix="edgeq-search-")
        reference = self._runner(calibrated, "float")
        order = positions(names, [p.label for p in reference.input_ports])
        self.samples = [[sample[k] for k in order] for sample in samples]
        self.reference = [reference.run(s) for s in self.samples]
        self.roles = [r.role for r in decide_roles(reference.output_facts(), roles, class_count)]
        if not any(r == "classes" for r in self.roles) and (budget.max_drop is not None or budget.min_agreement is not None):
            raise UsageError("--max-drop and --min-agreement judge a classes output, and this model has none (no SOFTMAX or "
                             "labels); use --min-sqnr")
        self.names = [d["name"] for d in reference.outputs]

    def _runner(self, model: bytes, name: str) -> LiteRTRunner:
        path = Path(self.tmp.name) / f"{name}.tflite"
        path.write_bytes(model)
        return LiteRTRunner(path)

    def evaluate(self, model: bytes, float_layers: list[str], kind: str = "int8") -> dict[str, Any]:
        self.evaluations += 1
        report(f"evaluating mix {self.evaluations} ({kind}, {len(float_layers)} float layer(s))", 0, len(self.samples))
        runner = self._runner(model, f"{kind}-{len(float_layers)}")
        scorer = Scorer(self.names, self.roles)
        for i, (sample, want) in enumerate(zip(self.samples, self.reference)):
            scorer.add(want, runner.run(sample), self.labels[i] if self.labels is not None else None)
            report(f"evaluating mix {self.evaluations} ({kind}, {len(float_layers)} float layer(s))", i + 1, len(self.samples))
        scores = scorer.result()
        missed = self.budget.missed(scores)
        acc = scores["accuracy"]
        return {"kind": kind, "float_layers": float_layers, "k": len(float_layers), "size_bytes": len(model),
                "float_top1": acc["float_top1"], "int8_top1": acc["int8_top1"], "top1_drop_pts": acc["top1_drop_pts"],
                "agreement": acc["agreement"], "worst_sqnr_db": scores["worst_sqnr_db"], "exact": scores["exact"], "meets": not missed,
                "missed": missed, "quality": self.budget.quality(scores)}


def ranked_layers(debug_model: bytes, samples: list[list[np.ndarray]], calibrated: bytes) -> list[dict[str, Any]]:
    """Every verified layer, worst first, with the calibrated graph's exact node name to denylist.
    Layers that only move values (RESHAPE, MAX_POOL_2D) come last but stay in the list: next to
    float neighbours their int8 tensor still costs a rounding."""
    from edgeq.conversion.debugger import run_debugger

    nodes = {t.name for t in parse_tflite(calibrated).tensors}
    layers = []
    for layer in run_debugger(debug_model, samples[:DEBUG_SAMPLES]):
        node = _node(layer["tensor_name"], nodes)
        if node is not None:
            layers.append({"rank": len(layers) + 1, "node": node, "op_type": layer["op_type"], "sqnr_db": layer["sqnr_db"]})
    return layers


def _node(name: str, nodes: set[str]) -> str | None:
    """The debugger reports a tensor name that may have lost a trailing digit of the original."""
    if name in nodes:
        return name
    stem = re.sub(r"\d$", "", name)
    matches = [n for n in nodes if re.sub(r"\d$", "", n) == stem]
    return matches[0] if len(matches) == 1 else None


INT16X8_NOTE = "16-bit activations (int16x8) run on LiteRT's built-in kernels only: not on XNNPACK, the Edge TPU or NNAPI"


def search(evaluator: Evaluator, full_int8: bytes, rank: Callable[[], list[dict[str, Any]]],
           quantize: Callable[[list[str]], bytes], max_float_layers: int | None,
           int16x8: Callable[[], bytes] | None = None) -> tuple[bytes, dict[str, Any]]:
    """Bisection over the ranked list; returns the chosen (or best-effort) model and the record.
    `rank` runs only when full INT8 misses the budget; `int16x8` (allowed by the user) is tried
    before any layer goes to float."""
    models: dict[int, bytes] = {0: full_int8}
    steps: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []

    def evaluate(k: int) -> dict[str, Any]:
        if k not in models:
            models[k] = quantize([layer["node"] for layer in layers[:k]])
        step = evaluator.evaluate(models[k], [layer["node"] for layer in layers[:k]])
        steps.append(step)
        return step

    chosen = evaluate(0)
    if not chosen["meets"] and int16x8 is not None:
        wide = int16x8()
        step = evaluator.evaluate(wide, [], kind="int16x8")
        steps.append(step)
        if step["meets"]:
            return wide, _record(evaluator, layers, 0, steps, step)
    if not chosen["meets"]:
        layers = rank()
    limit = len(layers) if max_float_layers is None else min(max_float_layers, len(layers))
    if not chosen["meets"] and limit > 0 and evaluate(limit)["meets"]:
        low, high = 0, limit  # k=low misses, k=high meets
        while high - low > 1:
            mid = (low + high) // 2
            if evaluate(mid)["meets"]:
                high = mid
            else:
                low = mid
        chosen = next(s for s in steps if s["k"] == high and s["meets"] and s["kind"] == "int8")
    elif not chosen["meets"]:
        chosen = max((s for s in steps if s["kind"] == "int8"), key=lambda s: s["quality"])
    return models[chosen["k"]], _record(evaluator, layers, limit, steps, chosen)


def _record(evaluator: Evaluator, layers: list[dict[str, Any]], limit: int, steps: list[dict[str, Any]],
            chosen: dict[str, Any]) -> dict[str, Any]:
    """The search as the manifest keeps it; the bound counts the float search (full INT8, upper
    bound, bisection), not the optional int16x8 try."""
    return {
        "budget": asdict(evaluator.budget), "eval_samples": len(evaluator.samples),
        "ranked_layers": layers, "layers_considered": limit,
        "max_evaluations": math.ceil(math.log2(limit)) + 2 if limit > 1 else 2,
        "evaluations": len(steps), "int8_evaluations": sum(s["kind"] == "int8" for s in steps), "steps": steps, "chosen": chosen, "met": chosen["meets"],
        "notes": [INT16X8_NOTE] if chosen["kind"] == "int16x8" else [],
    }
