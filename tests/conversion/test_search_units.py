"""The accuracy search's strategy over a fake evaluator: which sets it tries and which it keeps.

The fake evaluator judges a set of float layers by a rule on the set (the real one quantizes and
runs the model; tests/test_search.py does that on real models)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from edgeq.conversion.search.budget import max_evaluations, search, step_figure
from edgeq.records.budget import Budget
from edgeq.records.manifest import SearchStep, StepKind, StepOutput
from edgeq.scoring.metrics import Accuracy, OutputScore, Scores
from edgeq.tflite.graph import Layer, LayerGraph


def graph(n: int, outputs: int = 1, feeds: Callable[[int], frozenset[int]] | None = None) -> LayerGraph:
    """n layers in execution order; layer n-1-i writes output i."""
    feeds = feeds or (lambda i: frozenset(range(outputs)))
    layers = tuple(Layer(i, f"L{i}", "CONV_2D", i, feeds(i)) for i in range(n))
    return LayerGraph(layers, tuple(f"out{i}" for i in range(outputs)), tuple(layers[n - 1 - i] for i in range(outputs)))


@dataclass
class FakeEvaluator:
    """`missing(positions)`: the outputs (indices) that miss with those layers in float."""

    missing: Callable[[set[int]], set[int]]
    outputs: int = 1
    sixteen_missing: Callable[[set[int]], set[int]] | None = None  # a16w8 steps: the rule on their float layers
    budget: Budget = field(default_factory=lambda: Budget(min_sqnr=30.0))
    samples: list = field(default_factory=lambda: [0] * 8)
    evaluated: list = field(default_factory=list)
    held_back: None = None  # every sample judges: the held-back split has its own tests

    def evaluate(
        self,
        model: bytes,
        float_layers: list[str],
        kind: StepKind = StepKind.INT8,
        phase: str | None = None,
        method: str | None = None,
    ) -> SearchStep:
        positions = {int(n[1:]) for n in float_layers}
        self.evaluated.append((kind.value, len(float_layers)))
        if kind == StepKind.INT8:
            missing = self.missing(positions)
        elif kind == StepKind.A16W8 and self.sixteen_missing is not None:
            missing = self.sixteen_missing(positions)
        else:
            missing = set(range(self.outputs))
        outputs = tuple(
            StepOutput(
                f"out{i}",
                f"out{i}",
                "values",
                20.0 if i in missing else 35.0,
                False,
                None,
                -10.0 if i in missing else 5.0,
                i not in missing,
            )
            for i in range(self.outputs)
        )
        return SearchStep(
            kind,
            len(float_layers),
            len(model),
            not missing,
            method,
            phase,
            tuple(float_layers),
            worst_sqnr_db=20.0 if missing else 35.0,
            outputs=outputs,
            missed=tuple(f"out{i}: SQNR" for i in sorted(missing)),
            quality=-10.0 if missing else 5.0,
            seconds=0.0,
        )

    def evaluate_all(self, candidates: list, phase: str, kind: StepKind = StepKind.INT8) -> list:
        """As the real one does without a cluster: each built and evaluated in turn."""
        built = [(c.model if isinstance(c.model, bytes) else c.model(), c) for c in candidates]
        return [(model, self.evaluate(model, list(c.float_layers), kind, phase, c.method)) for model, c in built]


def run(missing, n: int = 40, outputs: int = 1, max_float_layers=None, int16x8=None, feeds=None, sixteen=None, seconds=None):
    evaluator = FakeEvaluator(missing, outputs)
    quantize = lambda nodes: ",".join(nodes).encode()  # noqa: E731
    model, record = search(
        evaluator, b"full", graph(n, outputs, feeds), quantize, max_float_layers, seconds, int16x8=int16x8, sixteen=sixteen
    )
    return evaluator, model, record


def needs(required: set[int]):
    """Meets exactly when every `required` layer is in float."""
    return lambda kept: set() if required <= kept else {0}


def positions(record) -> list[int]:
    return [int(n[1:]) for n in record.chosen.float_layers]


def test_full_int8_within_budget_is_one_evaluation():
    evaluator, model, record = run(lambda kept: set())
    assert model == b"full" and evaluator.evaluated == [("int8", 0)] and record.met and record.layers_considered == 0


def test_the_layer_writing_the_output_that_misses_is_tried_first():
    """Two outputs; only out1 misses, and its head (layer n-2) fixes it: two evaluations, one layer."""
    evaluator, model, record = run(lambda kept: set() if 38 in kept else {1}, outputs=2)
    assert positions(record) == [38] and record.met and len(evaluator.evaluated) == 2
    assert record.steps[1].phase == "output heads" and record.missed_outputs == ("out1",)
    assert model == b"L38"


def test_only_the_layers_feeding_the_outputs_that_miss_are_candidates():
    """Layers 0-19 feed out0 only, 20-39 out1 only; out1 misses: the search never keeps a layer of out0's path."""
    feeds = lambda i: frozenset({0}) if i < 20 else frozenset({1})  # noqa: E731
    evaluator, _, record = run(lambda kept: set() if {25, 26} <= kept else {1}, outputs=2, feeds=feeds)
    assert record.layers_considered == 20 and positions(record) == [25, 26]
    assert all(int(n[1:]) >= 20 for s in record.steps for n in s.float_layers)


def test_two_adjacent_regions_needed_together_are_found_as_their_union():
    """The DSP pattern: the front end (0-19) and the normalization (20-24) must both be float;
    neither alone helps. Prefix bisection finds the union; nothing else is kept."""
    required = set(range(25))
    evaluator, _, record = run(needs(required))
    assert positions(record) == sorted(required) and record.met
    assert record.int8_evaluations <= record.max_evaluations == max_evaluations(40)


def test_shrinking_drops_the_layers_between_two_far_apart_culprits():
    """The first set that meets is the region from layer 3 to 17; shrinking leaves the two."""
    evaluator, model, record = run(needs({3, 17}))
    first = next(s for s in record.steps if s.meets)
    assert first.k > 2 and positions(record) == [3, 17] and model == b"L3,L17"
    assert any(s.phase == "shrink" and s.meets for s in record.steps)
    assert record.int8_evaluations <= record.max_evaluations


def test_search_seconds_bound_the_refining_and_the_record_says_so():
    """--search-seconds 0: the region from layer 3 to 17 is the answer, nothing after it is
    evaluated, and a note says where the search stopped; without the bound shrinking leaves the two."""
    evaluator, model, record = run(needs({3, 17}), seconds=0)
    assert positions(record) == list(range(3, 18)) and record.met and model == b",".join(b"L%d" % i for i in range(3, 18))
    assert not any(s.phase in ("shrink", "effect of one unit alone") for s in record.steps)
    assert any(n.startswith("the search stopped refining at --search-seconds 0, after ") for n in record.notes)
    _, _, unbounded = run(needs({3, 17}), seconds=3600)
    assert positions(unbounded) == [3, 17] and not any("stopped refining" in n for n in unbounded.notes)


def test_on_many_candidates_the_region_is_bisected_to_within_a_64th_of_them():
    """1,000 candidates, layers 400-699 needed: the region holds them all, at most 2 x 15 more,
    in at most 7 evaluations per bisection (ceil(log2(64)) + 1) instead of 10."""
    evaluator, _, record = run(needs(set(range(400, 700))), n=1000, seconds=0)
    assert record.met and set(range(400, 700)) <= set(positions(record)) and record.chosen.k <= 300 + 2 * (1000 // 64)
    for phase in ("prefix bisection", "region start bisection"):
        assert 0 < sum(s.phase == phase for s in record.steps) <= 7


def test_a_steps_figure_in_words_is_the_one_its_budget_judges():
    """A mask output has an agreement (pixels), but --min-sqnr judges its SQNR: the held-back note
    read "met ... (agreement 0.9843) is missed ... (agreement 0.9917)" on MediaPipe's selfie segmenter."""
    mask = StepOutput("segment", "segment", "mask", 19.5, False, 0.9917, -0.5, False)
    step = SearchStep(StepKind.INT8, 3, 100, False, outputs=(mask,), worst_sqnr_db=19.5)
    assert step_figure(step, Budget(min_sqnr=20)) == "worst output 19.50 dB"
    assert step_figure(step, Budget(min_agreement=0.99)) == "agreement 0.9917"


@pytest.mark.parametrize("mix_bytes, taken", [(1, True), (100, False)])
def test_a_16_bit_mix_is_taken_with_fewer_float_layers_and_a_smaller_file_only(mix_bytes, taken):
    """int8 needs layers 3 and 17 in float; at 16 bits only 17 needs float. The mix (17 float, 3 at
    16 bits) is taken where its file is smaller than the two float layers' (6 bytes here), not where
    it is larger (ai-edge-quantizer's int8 elsewhere is laid out otherwise: PP-OCRv4 came out so)."""
    evaluator = FakeEvaluator(needs({3, 17}), sixteen_missing=lambda kept: set() if 17 in kept else {0})
    quantize = lambda nodes: ",".join(nodes).encode()  # noqa: E731
    sixteen = lambda layers, floats: b"m" * mix_bytes  # noqa: E731
    model, record = search(evaluator, b"full", graph(40), quantize, None, sixteen=sixteen)
    mix = [s for s in record.steps if s.kind == StepKind.A16W8 and s.meets and s.k == 1]
    assert mix and mix[0].float_layers == ("L17",) and mix[0].int16_layers == ("L3",)
    if taken:
        assert record.chosen == mix[0] and model == b"m"
    else:
        assert record.chosen.kind == StepKind.INT8 and positions(record) == [3, 17] and model == b"L3,L17"


def test_a_non_monotone_rule_keeps_the_smallest_set_that_met():
    """Keeping layer 30 in float breaks what keeping 5 fixed, unless 31 is float too: the search
    keeps the best set it saw, never one that misses."""
    rule = lambda kept: set() if 5 in kept and (30 not in kept or 31 in kept) else {0}  # noqa: E731
    _, _, record = run(rule)
    assert record.met and positions(record) == [5]


@pytest.mark.parametrize("seed", range(6))
def test_whatever_is_required_the_chosen_set_meets_within_the_bound(seed):
    rng = random.Random(seed)
    required = set(rng.sample(range(60), rng.randint(1, 4)))
    _, _, record = run(needs(required), n=60)
    kept = set(positions(record))
    assert record.met and required <= kept and len(kept) <= max(required) - min(required) + 1
    assert record.int8_evaluations <= record.max_evaluations


def test_an_unreachable_budget_keeps_the_best_effort_within_max_float_layers():
    evaluator, model, record = run(lambda kept: {0}, max_float_layers=1)
    assert not record.met and record.chosen.k <= 1
    assert model == ",".join(record.chosen.float_layers).encode() or (model == b"full" and record.chosen.k == 0)
    assert [phase for phase in (s.phase for s in record.steps)] == [
        "full int8",
        "output heads",
        "every layer feeding the missed outputs",
    ]


def test_a_set_over_max_float_layers_is_never_chosen():
    _, _, record = run(needs({3, 17}), max_float_layers=1)
    assert not record.met and record.chosen.k <= 1


def test_int16x8_is_tried_before_float_layers_when_allowed():
    evaluator, _, record = run(needs({4}), int16x8=lambda: b"wide")
    assert evaluator.evaluated[:2] == [("int8", 0), ("int16x8", 0)]
    assert positions(record) == [4] and record.int8_evaluations == record.evaluations - 1


def test_int16x8_that_cannot_be_built_leaves_the_search_to_go_on_and_says_why():
    """TensorFlow's 16x8 mode refuses PRELU (MTCNN's ONet): that ended the conversion in exit 2."""

    def refused():
        raise RuntimeError("Quantization to 16x8-bit not yet supported for op: 'PRELU'.")

    evaluator, _, record = run(needs({4}), int16x8=refused)
    assert positions(record) == [4] and record.met and evaluator.evaluated[0] == ("int8", 0)
    assert any(n.startswith("int16x8 throughout could not be built here") and "PRELU" in n for n in record.notes)


def test_budget_judges_every_output_and_a_classes_output_by_agreement():
    scores = Scores(
        Accuracy(output="cls"),
        (OutputScore("cls", "classes", sqnr_db=5.0, agreement=0.995), OutputScore("box", "values", sqnr_db=18.0)),
    )
    both = Budget(min_agreement=0.99, min_sqnr=20)
    assert both.missed(scores) == ["box: SQNR 18.00 dB < 20"]  # the classes output is judged by agreement only
    assert both.quality(scores) == pytest.approx(-2.0)
    sqnr_only = Budget(min_sqnr=20)
    assert sqnr_only.missed(scores) == ["cls: SQNR 5.00 dB < 20", "box: SQNR 18.00 dB < 20"]
    assert sqnr_only.quality(scores) == pytest.approx(-15.0)  # the worst output drives


def test_16_bit_layers_that_cannot_be_built_leave_the_float_layers_and_say_why():
    """ai-edge-quantizer refuses some graphs and LiteRT some of its files (MediaPipe's face detector):
    the search keeps its float choice, exits as it would have, and notes why."""

    def refused(layers, floats):
        raise ValueError("the interpreter rejected the model (failed to delegate PAD node #21)")

    _, model, record = run(needs({38}), sixteen=refused)
    assert positions(record) == [38] and record.met and model == b"L38"
    assert any(n.startswith("16-bit layers could not be built here") and "PAD node #21" in n for n in record.notes)
