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
