"""The figures on known arrays: SQNR, agreement, top-k, score thresholds, slices, sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeq.scoring.metrics import OutputErrors, Scorer
from edgeq.scoring.roles import OutputFacts, decide_roles

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_sqnr_agreement_and_top1_on_known_arrays():
    scorer = Scorer(["out"], ["classes"], top_k=2)
    reference = np.array([[1.0, 3.0, 2.0]], np.float32)
    scorer.add([reference], [reference + np.array([[0.1, -0.1, 0.0]], np.float32)], label=1)
    scorer.add([reference], [np.array([[3.0, 1.0, 2.0]], np.float32)], label=1)
    result = scorer.result()
    acc = result.accuracy
    assert acc.agreement == 0.5 and acc.float_top1 == 1.0 and acc.int8_top1 == 0.5 and acc.top1_drop_pts == 50.0
    signal, noise = 2 * (1 + 9 + 4), (0.01 + 0.01) + (4 + 4 + 0)
    assert result.worst_sqnr_db == pytest.approx(10 * math.log10(signal / noise), abs=1e-3)
    assert acc.output == "out" and acc.top_k == 2  # 3 classes > k


def test_no_argmax_over_values_and_top_k_only_above_k_classes():
    scorer = Scorer(["boxes", "face"], ["values", "classes"], top_k=5)
    scorer.add([np.array([[1.0, 2.0]]), np.array([[0.2, 0.8]])], [np.array([[2.0, 1.0]]), np.array([[0.3, 0.7]])], label=1)
    result = scorer.result()
    acc = result.accuracy
    assert acc.output == "face" and acc.agreement == 1.0  # the boxes' argmax flipped; it is not counted
    assert acc.top_k is None and acc.float_topk is None  # 2 classes: no top-5
    boxes, face = result.outputs
    assert boxes.agreement is None and face.agreement == 1.0


def test_a_score_output_agrees_by_its_threshold():
    scorer = Scorer(["p"], ["score"], threshold=0.5)
    for want, got in ((0.9, 0.8), (0.2, 0.3), (0.55, 0.45), (0.1, 0.1)):
        scorer.add([np.array([[want]])], [np.array([[got]])], None)
    out = scorer.result().outputs[0]
    assert out.agreement == 0.75 and out.threshold == 0.5 and scorer.result().accuracy.output is None


def test_a_destroyed_slice_is_found_under_a_healthy_whole():
    """Boxes of ~100 and class scores 0..1 in one [1, 6, 50] tensor, one int8 scale: the scores are gone."""
    rng = np.random.default_rng(0)
    error = OutputErrors("det")
    scale = 200 / 255
    for _ in range(8):
        reference = np.concatenate([rng.uniform(50, 200, (1, 4, 50)), rng.uniform(0, 1, (1, 2, 50))], axis=1)
        error.add(reference, np.round(reference / scale) * scale)
    result = error.score("values", None, None)
    worst = result.worst_slice
    assert result.sqnr_db > 25 and worst.axis == 1 and worst.index in (4, 5) and worst.sqnr_db < 10


def test_small_errors_keep_their_digits_and_an_exact_match_says_so():
    tiny = OutputErrors("t")
    tiny.add(np.array([[1e-6, 2e-6]]), np.array([[1.1e-6, 2e-6]]))
    figures = tiny.score("values", None, None)
    assert figures.max_abs_error == pytest.approx(1e-7, rel=1e-3) and figures.mean_abs_error > 0
    same = OutputErrors("s")
    same.add(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]))
    assert same.score("values", None, None).sqnr_db is None and same.score("values", None, None).exact is True


def test_a_sequence_output_is_scored_per_step_never_by_a_flattened_argmax():
    """[1, 3, 4]: three steps of four classes. The flattened argmax of both is the same element
    (so a flattened agreement would say 100%), while one step of three disagrees."""

    reference = np.array([[[0.1, 0.7, 0.1, 0.1], [0.2, 0.3, 0.4, 0.1], [0.9, 0.0, 0.05, 0.05]]], np.float32)
    quantized = np.array([[[0.1, 0.7, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.9, 0.0, 0.05, 0.05]]], np.float32)
    assert np.argmax(reference.ravel()) == np.argmax(quantized.ravel())
    role = decide_roles([OutputFacts("logits", (1, 3, 4), "SOFTMAX")])[0]
    assert role.role == "sequence" and "3 steps of 4 classes" in role.evidence
    scorer = Scorer(["logits"], [role.role])
    scorer.add([reference], [quantized], None)
    out = scorer.result().outputs[0]
    assert out.agreement == pytest.approx(2 / 3) and out.sequence_match == 0.0
    assert scorer.result().accuracy.agreement == pytest.approx(2 / 3) and scorer.result().accuracy.output == "logits"
    # a CTC path: [a, a, blank, b] and [a, blank, b, b] decode to the same text
    ctc = decide_roles([OutputFacts("ctc", (1, 4, 3), "LOG_SOFTMAX")], {"ctc": "ctc:0"})[0]
    assert (ctc.role, ctc.blank) == ("sequence", 0)
    one_hot = np.eye(3, dtype=np.float32)
    scorer = Scorer(["ctc"], ["sequence"], blanks={0: 0})
    scorer.add([one_hot[[1, 1, 0, 2]][None]], [one_hot[[1, 0, 2, 2]][None]], None)
    out = scorer.result().outputs[0]
    assert out.sequence_match == 1.0 and out.agreement == pytest.approx(2 / 4)
    # the user's "classes" on a multi-axis output is a sequence too
    assert decide_roles([OutputFacts("y", (1, 5, 7), None)], {"y": "classes"})[0].role == "sequence"


def test_a_mask_is_scored_by_pixels_iou_ties_and_boundary():
    """A disk against the same disk moved one pixel right: the IoU by hand, every boundary pixel
    within one pixel of the other's (F = 1), and the pixels exactly at the threshold counted."""
    from edgeq.scoring.metrics import Mask

    y, x = np.mgrid[:32, :32]
    disk = ((y - 16) ** 2 + (x - 16) ** 2 <= 64).astype(np.float32)
    moved = np.roll(disk, 1, axis=1)
    mask = Mask()
    mask.add(disk[None, :, :, None], moved[None, :, :, None])
    both, either = np.sum((disk > 0) & (moved > 0)), np.sum((disk > 0) | (moved > 0))
    assert mask.iou == both / either and mask.agreement == 1 - (either - both) / disk.size
    assert mask.boundary_f == 1.0 and mask.ties == 0
    tied = Mask()
    half = np.where(moved > 0, 0.5, 0.0).astype(np.float32)  # INT8's 0.5 where float says 1: the >= rule decides them
    tied.add(disk[None], half[None])
    assert tied.ties == int(moved.sum()) and tied.iou == mask.iou and tied.iou_ties_out == 0.0
    far = Mask()
    far.add(disk[None], np.roll(disk, 5, axis=1)[None])
    assert far.boundary_f < 0.5
