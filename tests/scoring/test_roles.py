"""Output roles decided from the model's evidence."""

from __future__ import annotations

import pytest

from edgeq.core.errors import UsageError
from edgeq.scoring.roles import OutputFacts, decide_roles, parse_roles

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_roles_come_from_evidence_and_say_which():
    facts = [
        OutputFacts("boxes", (1, 4)),
        OutputFacts("landmarks", (1, 10)),
        OutputFacts("prob", (1, 2), "SOFTMAX"),
        OutputFacts("presence", (1, 1), "LOGISTIC"),
        OutputFacts("logits", (1, 7)),
    ]
    roles = decide_roles(facts, {"logits": "classes"})
    assert [r.role for r in roles] == ["values", "values", "classes", "score", "classes"]
    assert "SOFTMAX" in roles[2].evidence and roles[4].evidence == "--output-role"
    by_data = decide_roles([OutputFacts("a", (1, 10)), OutputFacts("b", (1, 3))], class_count=3)
    assert [r.role for r in by_data] == ["values", "classes"] and "labelled classes" in by_data[1].evidence
    assert [r.role for r in decide_roles([OutputFacts("a", (1, 3)), OutputFacts("b", (1, 3))], class_count=3)] == ["values"] * 2
    with pytest.raises(UsageError, match="no such output"):
        decide_roles(facts, {"nope": "classes"})
    with pytest.raises(UsageError, match="KEY=classes"):
        parse_roles(["prob=probabilities"])


def test_a_logistic_map_of_the_inputs_size_is_a_mask():
    from edgeq.scoring.roles import OutputFacts, decide_roles

    facts = [
        OutputFacts("segment", (1, 32, 32, 1), "LOGISTIC"),
        OutputFacts("heatmap", (1, 8, 8, 1), "LOGISTIC"),  # not the input's size: values
        OutputFacts("nchw", (1, 1, 32, 32), "LOGISTIC"),
    ]
    roles = decide_roles(facts, inputs=[(1, 32, 32, 3)])
    assert [r.role for r in roles] == ["mask", "values", "mask"]
    assert roles[0].evidence == "LOGISTIC over a 32x32 map, the input's size"
    assert decide_roles(facts[1:2], {"heatmap": "mask"}, inputs=[(1, 32, 32, 3)])[0].role == "mask"
    assert [r.role for r in decide_roles(facts)] == ["values"] * 3  # no input shapes, no evidence


def test_a_time_major_softmax_is_a_sequence():
    """A recurrent recognizer's [T, 1, C] output after SOFTMAX: T steps of C classes, without --output-role."""
    from edgeq.scoring.roles import OutputFacts, decide_roles

    (role,) = decide_roles([OutputFacts("logits", (20, 1, 8210), "SOFTMAX")])
    assert role.role == "sequence" and "20 steps of 8210 classes" in role.evidence
    assert decide_roles([OutputFacts("probs", (1, 10), "SOFTMAX")])[0].role == "classes"
