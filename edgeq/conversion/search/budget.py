"""Mixed precision under an accuracy budget: few layers kept in float, found by their effect on
the model's outputs.

Every candidate is judged the same way: quantized with that set of layers kept in float (one
calibration for all), run on the eval samples, and scored per output against the float model.
The budget holds for every output; the outputs that miss it drive the search:

1. full INT8 (and, when allowed, int16x8 activations);
2. the layers that write the outputs that miss (a regression head);
3. every layer feeding those outputs: the upper bound; if even that misses, the best effort;
4. bisection over the execution order of those layers, as Polygraphy's `debug precision` does:
   the shortest prefix that meets the budget, then the latest start of a region ending there
   (a front end, a head, or a front end and the normalization after it), each to within 1/64 of
   the candidates (one layer up to 127; on a large model a candidate takes seconds);
5. ranking by effect: contiguous units of those layers, each alone in float, judged by the worst
   output; bisection over that ranking (an error spread over many layers);
6. the smaller set of 4 and 5 loses its least effective layers (bisection on how many); then
   shrinking drops parts of it while the rest still meets the budget, coarse to fine within a
   bound on evaluations, since keeping more in float does not always help (rounding errors that
   cancelled can stop cancelling).

The smallest set that met the budget is chosen; with none, the best-scoring one within
--max-float-layers. With 16-bit activations allowed, the chosen float layers are tried at 16 bits
instead (edgeq.conversion.a16w8); where that misses, steps 3-4 run again over them with the rest
at 16 bits, and the mix with the fewest float layers wins where it has fewer and a smaller file.
Candidates are judged on the tuning two thirds of --eval-data; the choice is confirmed on the
held-back third (evaluator_for), and a budget is met only where it holds there too. No layer is
ranked by its isolated error: an error that cannot be measured in isolation (a LOG on zeros, a
REDUCE_MAX) is never a reason to look at a layer last.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.core.progress import SEARCH, counted, report
from edgeq.core.units import number
from edgeq.records.budget import Budget
from edgeq.records.manifest import ChosenLayer, Search, SearchStep, StepKind, StepOutput
from edgeq.run.cluster import each
from edgeq.run.litert import LiteRTRunner
from edgeq.run.sequences import fed_back, feedback_pairs
from edgeq.scoring.held_back import HOLD_BACK_EVERY, MIN_HELD_BACK, Split, few_samples_notes
from edgeq.scoring.metrics import Scorer
from edgeq.scoring.roles import decide_roles
from edgeq.tflite.graph import Layer, LayerGraph
from edgeq.tflite.signatures import positions


def _finite(x: float | None) -> float | None:
    """A margin as JSON keeps it: None for an exact output (+inf) or one without a figure (-inf)."""
    return None if x is None or math.isinf(x) else round(x, 4)


def output_quality(output: StepOutput) -> float:
    """One output's figure in a step, higher is better: its margin over the budget, or its SQNR
    where the budget gives no finite margin (none given: SQNR as high as it gets)."""
    if output.exact:
        return math.inf
    figure = output.margin if output.margin is not None else output.sqnr_db
    return -math.inf if figure is None else figure


def leximin(step: SearchStep) -> tuple[bool, list[float]]:
    """Orders steps best last: meeting the budget first, then the worst output's figure, then the next worst's."""
    return step.meets, sorted(output_quality(o) for o in step.outputs)


def _fmt(x: float | None, digits: int = 2) -> str:
    return number(x, f".{digits}f")


class Evaluator:
    """Scores candidate models on the eval samples against the float (calibrated) model, per output."""

    def __init__(
        self,
        calibrated: bytes,
        samples: list[list[np.ndarray]],
        names: list[str],
        labels: list[int] | None,
        budget: Budget,
        roles: dict[str, str] | None = None,
        class_count: int | None = None,
        feedback: dict[str, str] | None = None,
        starts: Set[int] = frozenset(),
        cluster: str | None = None,
    ):
        """`samples`: arrays in the order of the input keys `names`; fed by key to every candidate.
        `feedback` (output key -> input key): the samples are sequences in data order (new ones at
        `starts`), and each model, the float one and every candidate, feeds its own outputs back."""
        if budget.max_drop is not None and labels is None:
            raise UsageError("--max-drop needs labelled --eval-data (class folders, or y in a .npz); use --min-agreement")
        self.labels, self.budget, self.evaluations, self.cluster = labels, budget, 0, cluster
        self.tmp = tempfile.TemporaryDirectory(prefix="edgeq-search-")
        reference = self._runner(calibrated, "float")
        order = positions(names, [p.label for p in reference.input_ports])
        self.samples = [[sample[k] for k in order] for sample in samples]
        self.pairs = feedback_pairs(
            [p.label for p in reference.output_ports], [p.label for p in reference.input_ports], feedback or {}
        )
        self.starts = set(starts)
        self.reference = list(self._outputs(reference))
        shapes = [tuple(p.shape) for p in reference.input_ports]
        self.roles = [r.role for r in decide_roles(reference.output_facts(), roles, class_count, shapes)]
        if budget.min_iou is not None and "mask" not in self.roles:
            raise UsageError(
                "--min-iou judges a mask output, and this model has none (a LOGISTIC map of the input's size); "
                "name it: --output-role KEY=mask (its outputs: "
                + ", ".join(p.label for p in reference.output_ports)
                + "), or use --min-sqnr"
            )
        if (
            budget.max_drop is not None
            and "classes" not in self.roles
            or budget.min_agreement is not None
            and not {"classes", "sequence"} & set(self.roles)
        ):
            keys = ", ".join(p.label for p in reference.output_ports)
            raise UsageError(
                f"--{'max-drop' if budget.max_drop is not None else 'min-agreement'} judges a classes output, and "
                f"this model has none (no SOFTMAX, labels in its metadata or --output-role); for a logits output "
                f"name it: --output-role KEY=classes (its outputs: {keys}), or use --min-sqnr"
            )
        self.names = [p.label for p in reference.output_ports]  # signature keys where the model has them
        self.tensors = reference.output_names
        self.held_back: Evaluator | None = None  # the same judge on samples the choice was not made on

    def _outputs(self, runner: LiteRTRunner) -> Iterable[list[np.ndarray]]:
        """Each sample's outputs: window by window as they are scored, or streamed with the model's own state fed back."""
        return _outputs(runner, self.samples, self.pairs, self.starts)

    def _runner(self, model: bytes, name: str) -> LiteRTRunner:
        path = Path(self.tmp.name) / f"{name}.tflite"
        path.write_bytes(model)
        return LiteRTRunner(path)

    def evaluate(
        self,
        model: bytes,
        float_layers: list[str],
        kind: StepKind = StepKind.INT8,
        phase: str | None = None,
        method: str | None = None,
    ) -> SearchStep:
        """One candidate's figures: per output, the worst of them, and whether it meets the budget."""
        start = time.perf_counter()
        self.evaluations += 1
        named = f" {method}" if method else ""
        what = f"evaluating mix {self.evaluations} ({kind.value}{named}, {len(float_layers)} float layer(s))"
        runner = self._runner(model, f"{kind.value}-{len(float_layers)}")
        outputs = counted(what, self._outputs(runner), len(self.samples))
        return self._scored(model, outputs, float_layers, kind, phase, method, start)

    def evaluate_all(self, builds: list[Candidate], phase: str, kind: StepKind = StepKind.INT8) -> list[tuple[bytes, SearchStep]]:
        """Candidates that do not depend on each other, each built (a model's bytes or how to make
        them) and evaluated: one after the other here, or all at once as tasks on --cluster; the
        driver scores them in order, so the figures are the same either way."""
        if self.cluster is None or len(builds) < 2:
            built = ((c.model if isinstance(c.model, bytes) else c.model(), c) for c in builds)
            return [(model, self.evaluate(model, list(c.float_layers), kind, phase, c.method)) for model, c in built]
        ran = each(self.cluster, phase, candidate_outputs, [c.model for c in builds], (self.samples, self.pairs, self.starts))
        steps = []
        for (model, outputs, seconds), c in zip(ran, builds):
            self.evaluations += 1
            start = time.perf_counter() - seconds
            steps.append((model, self._scored(model, outputs, list(c.float_layers), kind, phase, c.method, start)))
        return steps

    def _scored(
        self,
        model: bytes,
        outputs: Iterable[list[np.ndarray]],
        float_layers: list[str],
        kind: StepKind,
        phase: str | None,
        method: str | None,
        start: float,
    ) -> SearchStep:
        scorer = Scorer(self.names, self.roles)
        for i, (want, got) in enumerate(zip(self.reference, outputs)):
            scorer.add(want, got, self.labels[i] if self.labels is not None else None)
        scores = scorer.result()
        missed = self.budget.missed(scores)
        margins = self.budget.margins(scores)
        acc = scores.accuracy
        outputs_ = tuple(
            StepOutput(
                o.name,
                tensor,
                o.role,
                o.sqnr_db,
                o.exact,
                o.agreement,
                _finite(margins.get(o.name)),
                o.name not in margins or margins[o.name] >= 0,
            )
            for o, tensor in zip(scores.outputs, self.tensors)
        )
        return SearchStep(
            kind,
            len(float_layers),
            len(model),
            not missed,
            method,
            phase,
            tuple(float_layers),
            acc.float_top1,
            acc.int8_top1,
            acc.top1_drop_pts,
            acc.agreement,
            scores.worst_sqnr_db,
            scores.exact,
            outputs_,
            tuple(missed),
            self.budget.quality(scores),
            round(time.perf_counter() - start, 3),
        )


@dataclass(frozen=True)
class Candidate:
    """A candidate model: its bytes, or a function that makes them (run where it is evaluated)."""

    model: bytes | Callable[[], bytes]
    float_layers: tuple[str, ...] = ()
    method: str | None = None


def _outputs(
    runner: LiteRTRunner, samples: list[list[np.ndarray]], pairs: list[tuple[int, int]], starts: set[int]
) -> Iterable[list[np.ndarray]]:
    if pairs:
        return fed_back(runner.run, samples, pairs, starts)
    return (runner.run(s) for s in samples)


def candidate_outputs(
    build: bytes | Callable[[], bytes], samples: list[list[np.ndarray]], pairs: list[tuple[int, int]], starts: set[int]
) -> tuple[bytes, list[list[np.ndarray]], float]:
    """A Ray task of Evaluator.evaluate_all: the candidate built, its outputs on every sample, the seconds taken."""
    start = time.perf_counter()
    model = build if isinstance(build, bytes) else build()
    with tempfile.TemporaryDirectory(prefix="edgeq-candidate-") as folder:
        path = Path(folder) / "candidate.tflite"
        path.write_bytes(model)
        outputs = list(_outputs(LiteRTRunner(path), samples, pairs, starts))
    return model, outputs, time.perf_counter() - start


def evaluator_for(calibrated: bytes, specs, options, budget: Budget | None = None) -> Evaluator:
    """An Evaluator of a conversion's candidates (`options`: its ConvertOptions) on the tuning split
    of its --eval-data against the calibrated float graph, judged by `budget` (default: the
    options'); its `held_back` judges the same way on the other split (None when too few samples)."""
    samples, eval_source = options.eval_samples(list(specs))
    starts: set[int] = getattr(eval_source, "starts", set()) if options.feedback else set()
    split = Split.of(len(samples), starts)

    def part(indices: tuple[int, ...]) -> Evaluator:
        labels = eval_source.labels
        return Evaluator(
            calibrated,
            [samples[i] for i in indices],
            [s.name for s in specs],
            None if labels is None else [labels[i] for i in indices],
            budget or options.budget,
            options.output_roles,
            len(eval_source.class_names or []) or None,
            options.feedback,
            Split.starts_within(indices, starts),
            options.cluster,
        )

    evaluator = part(split.tuning)
    evaluator.held_back = part(split.held_back) if split.held_back else None
    return evaluator


INT16X8_NOTE = "16-bit activations (int16x8) run on LiteRT's built-in kernels only: not on XNNPACK, the Edge TPU or NNAPI"


EFFECT_UNITS = 24  # the effect ranking measures at most this many units of layers, each alone


def max_evaluations(candidates: int) -> int:
    """The bound on int8 evaluations: full INT8, heads, the upper bound, the region's two
    bisections, the effect ranking and its bisection, dropping the least effective, shrinking."""
    log = math.ceil(math.log2(candidates)) if candidates > 1 else 1
    units = min(candidates, EFFECT_UNITS)
    return 3 + 3 * log + units + math.ceil(math.log2(max(units, 2))) + shrink_budget(candidates)


def shrink_budget(candidates: int) -> int:
    return 2 * math.ceil(math.log2(candidates)) + 8 if candidates > 1 else 1


class _Search:
    """One search: every evaluated set once, by its nodes. Only the bytes of sets that could still
    be chosen are kept (the smallest that met so far, the best that missed), not one per candidate.
    `wide`: the layers not in float are at 16-bit activations (a16w8 steps, the float layers
    searched among these), else int8."""

    def __init__(
        self,
        evaluator: Evaluator,
        full_int8: bytes,
        quantize: Callable[[list[str]], bytes],
        max_float_layers: int | None,
        wide: tuple[str, ...] = (),
        refine_seconds: float | None = None,
    ):
        self.evaluator, self.quantize, self.max, self.wide = evaluator, quantize, max_float_layers, wide
        self.kind = StepKind.A16W8 if wide else StepKind.INT8
        self.refine_seconds, self.deadline = refine_seconds, math.inf
        self.models: dict[tuple[str, ...], bytes] = {}
        self.seen: dict[tuple[str, ...], SearchStep] = {}
        self.steps: list[SearchStep] = []
        self.full_int8 = full_int8
        self.bound: int | None = None  # at most this many steps in all, once the candidates are known
        self.notes: list[str] = []

    def refining(self) -> None:
        """The first answer is in: from here on, new candidates stop at --search-seconds."""
        if self.refine_seconds is not None:
            self.deadline = time.perf_counter() + self.refine_seconds

    def known(self, layers: list[Layer]) -> bool:
        return self._key(layers) in self.seen

    @staticmethod
    def _key(layers: list[Layer]) -> tuple[str, ...]:
        return tuple(layer.node for layer in sorted(layers, key=lambda layer: layer.position))

    def meets(self, layers: list[Layer], phase: str) -> bool:
        return self.step(layers, phase).meets

    def step(self, layers: list[Layer], phase: str) -> SearchStep:
        return self.steps_of([layers], phase)[0]

    def steps_of(self, sets: list[list[Layer]], phase: str) -> list[SearchStep]:
        """Each set's step; the sets not evaluated yet are independent candidates (all at once on a cluster)."""
        new = list(dict.fromkeys(key for key in map(self._key, sets) if key not in self.seen))
        if new and time.perf_counter() > self.deadline:
            raise OutOfTime(len(self.steps))
        candidates = [Candidate(partial(self.quantize, list(key)) if key else self.full_int8, key) for key in new]
        for key, (model, step) in zip(new, self.evaluator.evaluate_all(candidates, phase, self.kind)):
            if self.wide:
                step = replace(step, int16_layers=tuple(n for n in self.wide if n not in key))
            if self._may_be_chosen(step):
                self.models[key] = model
            self.seen[key] = step
            self.steps.append(step)
            report(SEARCH, len(self.steps), self.bound and max(self.bound, len(self.steps)), self._best_so_far())
        return [self.seen[self._key(layers)] for layers in sets]

    def _best_so_far(self) -> str:
        met = [s for s in self.steps if s.meets]
        if met:
            return f"best so far: {min(s.k for s in met)} float layer(s)"
        return "none meets the budget yet"

    def _may_be_chosen(self, step: SearchStep) -> bool:
        allowed = [s for s in self.steps if s.kind == self.kind and (self.max is None or s.k <= self.max)]
        if self.max is not None and step.k > self.max:
            return False
        if step.meets:
            return all(step.k <= s.k for s in allowed if s.meets)
        return not any(s.meets for s in allowed) and all(step.quality >= s.quality for s in allowed)

    def model(self, step: SearchStep) -> bytes:
        key = step.float_layers
        return self.models.get(key) or (self.quantize(list(key)) if key else self.full_int8)


def search(
    evaluator: Evaluator,
    full_int8: bytes,
    graph: LayerGraph,
    quantize: Callable[[list[str]], bytes],
    max_float_layers: int | None,
    refine_seconds: float | None = None,
    int16x8: Callable[[], bytes] | None = None,
    sixteen: Callable[[list[str], list[str]], bytes] | None = None,
) -> tuple[bytes, Search]:
    """The search of the module docstring; returns the chosen (or best-effort) model and the record.
    `sixteen` (16 bits before float): the model with the first named layers at 16-bit activations,
    the second in float, int8 elsewhere; the chosen float layers are tried so, and where that
    misses, the region bisection finds those of them that need float, the rest at 16 bits."""
    start = time.perf_counter()
    run = _Search(evaluator, full_int8, quantize, max_float_layers, refine_seconds=refine_seconds)
    first = run.step([], "full int8")
    whole: tuple[bytes, SearchStep] | None = None  # int16x8 throughout, where it meets
    if not first.meets and int16x8 is not None:
        try:
            wide = int16x8()
        except Exception as exc:  # TensorFlow's 16x8 mode lacks some ops (PRELU): the search goes on without it
            run.notes.append(f"int16x8 throughout could not be built here: {(str(exc).strip().splitlines() or [''])[0][:300]}")
        else:
            step = evaluator.evaluate(wide, [], kind=StepKind.INT16X8, phase="int16x8 activations")
            run.steps.append(step)
            if step.meets and sixteen is None:
                record = _record(evaluator, graph, [], run.steps, step, start, _confirmed(evaluator, wide, step))
                return wide, replace(record, notes=record.notes + tuple(run.notes))
            whole = (wide, step) if step.meets else None
    candidates: list[Layer] = []
    if not first.meets:
        missing = {graph.output_names.index(o.tensor) for o in first.outputs if not o.meets and o.tensor in graph.output_names}
        candidates = graph.feeding(missing) if missing else list(graph.layers)
        run.bound = len(run.steps) + max_evaluations(len(candidates))
        _refined(run, candidates, [graph.heads[i] for i in sorted(missing) if graph.heads[i] is not None])
    chosen = _best(run.steps, max_float_layers)
    model, chosen = _sixteen_bits(run, graph, chosen, sixteen, whole)
    record = _record(evaluator, graph, candidates, run.steps, chosen, start, _confirmed(evaluator, model, chosen))
    return model, replace(record, notes=record.notes + tuple(run.notes))


def _sixteen_bits(
    run: _Search,
    graph: LayerGraph,
    chosen: SearchStep,
    sixteen: Callable[[list[str], list[str]], bytes] | None,
    whole: tuple[bytes, SearchStep] | None,
) -> tuple[bytes, SearchStep]:
    """16 bits before float: the chosen float layers at 16-bit activations instead (int8 elsewhere),
    those of them that still need float found as the int8 search finds its region (every candidate
    with the rest at 16 bits); the mix with the fewest float layers that meets, where it has fewer
    than the chosen and a smaller file (ai-edge-quantizer's int8 elsewhere is not TensorFlow's: on
    PP-OCRv4 157 float layers and 3 at 16 bits came out 3 KB larger than 160 float); else the whole
    model at int16x8 where that met; else the chosen."""
    if sixteen is not None and chosen.meets and chosen.kind == StepKind.INT8 and chosen.float_layers:
        wide = chosen.float_layers
        try:
            sub = _Search(run.evaluator, sixteen(list(wide), []), partial(_floated, sixteen, wide), run.max, wide)
            _search_float_layers(sub, [layer for layer in graph.layers if layer.node in set(wide)])
        except Exception as exc:  # ai-edge-quantizer refuses some graphs, LiteRT some of its files: the float layers stay
            run.notes.append(f"16-bit layers could not be built here, the float layers stay: {' '.join(str(exc).split())[:300]}")
            return run.model(chosen), chosen
        run.steps.extend(sub.steps)
        run.notes.extend(sub.notes)
        mixes = [s for s in sub.steps if s.meets and s.k < chosen.k and s.size_bytes < chosen.size_bytes]
        if mixes:
            best = min(mixes, key=lambda s: (s.k, -s.quality))
            return sub.model(best), best
    if whole is not None and (chosen.float_layers or not chosen.meets):
        return whole
    return run.model(chosen), chosen


def _floated(sixteen: Callable[[list[str], list[str]], bytes], wide: tuple[str, ...], floats: list[str]) -> bytes:
    """The a16w8 candidate with `floats` in float and the rest of `wide` at 16 bits."""
    return sixteen([n for n in wide if n not in set(floats)], floats)


def _search_float_layers(run: _Search, candidates: list[Layer]) -> None:
    """Steps 1, 3 and 4 of the module docstring over `candidates`: the region of them that needs
    float (each candidate an ai-edge-quantizer build: on MediaPipe's selfie segmenter steps 5-6 took
    the 16-bit tries from 17 to 69 and found nothing smaller)."""
    if not run.step([], "the chosen float layers at 16 bits instead").meets and run.meets(candidates, "all of them in float"):
        _region(run, candidates)


class OutOfTime(Exception):
    """--search-seconds ran out while refining: the best set found so far is the answer."""


def _refined(run: _Search, candidates: list[Layer], heads: list[Layer]) -> None:
    """Steps 2-6 over `candidates`; refining (5 and 6) stops where --search-seconds runs out, and says so."""
    try:
        found = _find(run, candidates, heads)
        if found is not None:
            _shrink(run, found, shrink_budget(len(candidates)))
    except OutOfTime as stop:
        run.notes.append(
            f"the search stopped refining at --search-seconds {run.refine_seconds:g}, after {stop.args[0]} evaluation(s): "
            "ranking by effect, dropping and shrinking may find fewer float layers with more time"
        )


def _confirmed(evaluator: Evaluator, model: bytes, chosen: SearchStep) -> SearchStep | None:
    """The chosen model judged on the held-back samples (None without them): the budget is met only where it holds there too."""
    if evaluator.held_back is None:
        return None
    return evaluator.held_back.evaluate(model, list(chosen.float_layers), chosen.kind, "held back", chosen.method)


def _find(run: _Search, candidates: list[Layer], heads: list[Layer]) -> list[Layer] | None:
    """A set that meets the budget (steps 2-6 but shrinking), or None when even every candidate in float misses."""
    heads = sorted(set(heads), key=lambda layer: layer.position)
    if heads and run.meets(heads, "output heads"):
        return heads
    if not candidates or not run.meets(candidates, "every layer feeding the missed outputs"):
        return None
    region = _region(run, candidates)
    run.refining()
    ranked, effect = _ranked_by_effect(run, candidates)
    found = min(region, ranked, key=len) if ranked is not None else region
    return _drop_least_effective(run, found, effect)


RESOLUTION = 64  # the region's bisections stop within 1/64 of the candidates (one layer for up to 127)


def _shortest_prefix(run: _Search, ordered: list, phase: str) -> int:
    """The fewest leading items of `ordered` (layers, or units of layers) that meet the budget
    together (all of them do; none does not), to within len(ordered) // RESOLUTION items."""

    def layers(items: list) -> list[Layer]:
        return [x for item in items for x in (item if isinstance(item, list) else [item])]

    low, high = 0, len(ordered)
    while high - low > max(1, len(ordered) // RESOLUTION):
        mid = (low + high) // 2
        if run.meets(layers(ordered[:mid]), phase):
            high = mid
        else:
            low = mid
    return high


def _region(run: _Search, candidates: list[Layer]) -> list[Layer]:
    """The shortest prefix in execution order that meets, then the latest start of a region ending there."""
    end = _shortest_prefix(run, candidates, "prefix bisection")
    good, bad = 0, end  # the region from `good` to `end` meets; from `bad` (none at first) misses
    while bad - good > max(1, len(candidates) // RESOLUTION):
        mid = (good + bad) // 2
        if run.meets(candidates[mid:end], "region start bisection"):
            good = mid
        else:
            bad = mid
    return candidates[good:end]


def _ranked_by_effect(run: _Search, candidates: list[Layer]) -> tuple[list[Layer] | None, dict[str, float]]:
    """Contiguous units of the candidates (at most EFFECT_UNITS), each measured alone in float by
    what it does to the worst output, best first; then the fewest of them that meet together
    (bisection over the ranking), and each layer's effect (its unit's). For an error spread over
    many layers, where no region explains it."""
    size = math.ceil(len(candidates) / EFFECT_UNITS)
    units = [candidates[i : i + size] for i in range(0, len(candidates), size)]
    if len(units) < 2:
        return None, {}
    effect = [step.quality for step in run.steps_of(units, "effect of one unit alone")]
    order = sorted(range(len(units)), key=lambda i: (-effect[i], i))
    count = _shortest_prefix(run, [units[i] for i in order], "bisection over the effect ranking")
    chosen = sorted([layer for i in order[:count] for layer in units[i]], key=lambda layer: layer.position)
    return chosen, {layer.node: effect[i] for i, unit in enumerate(units) for layer in unit}


def _drop_least_effective(run: _Search, kept: list[Layer], effect: dict[str, float]) -> list[Layer]:
    """`kept` without as many of its least effective layers (by their unit's effect) as it can
    lose and still meet: bisection on how many."""
    if not effect or len(kept) < 2:
        return kept
    weakest = sorted(kept, key=lambda layer: (effect.get(layer.node, -math.inf), -layer.position))
    low, high = 0, len(kept)  # dropping `low` of them meets; dropping all (none kept) misses
    while high - low > 1:
        mid = (low + high) // 2
        rest = [layer for layer in kept if layer not in set(weakest[:mid])]
        if run.meets(rest, "dropping the least effective"):
            low = mid
        else:
            high = mid
    return [layer for layer in kept if layer not in set(weakest[:low])]


def _shrink(run: _Search, kept: list[Layer], budget: int) -> list[Layer]:
    """Drop parts of `kept` (halves, then quarters, ...) while the rest meets, within `budget` new
    evaluations; a part that could not go is tried again only in smaller pieces."""
    size, spent = math.ceil(len(kept) / 2), 0
    while len(kept) > 1 and spent < budget:
        dropped = False
        for i in range(0, len(kept), size):
            rest = [layer for layer in kept if layer not in set(kept[i : i + size])]
            if not rest or len(rest) == len(kept) or spent >= budget:
                continue
            spent += not run.known(rest)
            if run.meets(rest, "shrink"):
                kept, dropped = rest, True
        if not dropped:
            if size == 1:
                break
            size = math.ceil(size / 2)
    return kept


def _best(steps: list[SearchStep], max_float_layers: int | None) -> SearchStep:
    """The smallest int8 set that meets the budget (ties: the better figures); else the best-scoring
    within --max-float-layers."""
    allowed = [s for s in steps if s.kind == StepKind.INT8 and (max_float_layers is None or s.k <= max_float_layers)]
    meeting = [s for s in allowed if s.meets]
    if meeting:
        return min(meeting, key=lambda s: (s.k, -s.quality))
    return max(allowed, key=lambda s: s.quality)


def _record(
    evaluator: Evaluator,
    graph: LayerGraph,
    candidates: list[Layer],
    steps: list[SearchStep],
    chosen: SearchStep,
    start: float,
    held: SearchStep | None,
) -> Search:
    """The search as the manifest keeps it; the bound counts the int8 evaluations, not the int16x8 try."""
    by_node = {layer.node: layer for layer in graph.layers}
    budget = {f.name: getattr(evaluator.budget, f.name) for f in fields(evaluator.budget)}
    judged, count = (held, len(evaluator.held_back.samples)) if held and evaluator.held_back else (chosen, len(evaluator.samples))
    return Search(
        budget=budget,
        eval_samples=len(evaluator.samples),
        layers_considered=len(candidates),
        max_evaluations=max_evaluations(len(candidates)),
        evaluations=len(steps),
        steps=tuple(steps),
        chosen=chosen,
        met=chosen.meets and (held is None or held.meets),
        int8_evaluations=sum(s.kind == StepKind.INT8 for s in steps),
        strategy="output-aware: output heads, bisection by region over the execution order, shrinking",
        graph_layers=len(graph.layers),
        missed_outputs=tuple(o.name for o in steps[0].outputs if not o.meets),
        seconds=round(time.perf_counter() - start, 3),
        chosen_layers=tuple(ChosenLayer(n, by_node[n].op_type, by_node[n].position) for n in chosen.float_layers if n in by_node),
        notes=((INT16X8_NOTE,) if chosen.kind in (StepKind.INT16X8, StepKind.A16W8) else ())
        + _held_back_notes(evaluator.budget, len(evaluator.samples), chosen, held, count)
        + tuple(
            few_samples_notes(
                budget,
                [o.agreement for o in judged.outputs if o.agreement is not None],
                count,
                f"held-back (and {len(evaluator.samples)} tuning)" if held else "tuning",
            )
        ),
        held_back=held,
        held_back_samples=count if held else 0,
    )


def _held_back_notes(budget: Budget, tuning: int, chosen: SearchStep, held: SearchStep | None, count: int) -> tuple[str, ...]:
    if held is None:
        return (
            f"none of the {tuning} --eval-data samples was held back (every {HOLD_BACK_EVERY}th is when that gives at least "
            f"{MIN_HELD_BACK}): the budget was judged on the samples the search chose on, and may miss on the next ones",
        )
    if chosen.meets and not held.meets:
        return (
            f"the budget met on the {tuning} tuning samples ({step_figure(chosen, budget)}) is missed on the {count} "
            f"held-back ones ({step_figure(held, budget)}): the choice fits the samples it was made on; give more "
            "--eval-data, or ask a margin above what the app needs",
        )
    return ()


def step_figure(step: SearchStep, budget: Budget) -> str:
    """A step's deciding figure in words: the worst agreement where the budget judges one (an
    agreement or a drop limit) and an output has one, else the worst SQNR."""
    agreements = [o.agreement for o in step.outputs if o.agreement is not None]
    if agreements and (budget.min_agreement is not None or budget.max_drop is not None):
        return f"agreement {min(agreements):.4f}"
    return "an exact match" if step.exact else f"worst output {_fmt(step.worst_sqnr_db)} dB"
