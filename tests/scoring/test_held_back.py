"""A candidate beats a baseline only beyond what the judging samples can tell (paired bootstrap)."""

from __future__ import annotations

import numpy as np

from edgeq.scoring.held_back import Powers, gain


def _powers(noise: list[float]) -> Powers:
    return Powers(np.ones((1, len(noise))), np.asarray([noise]))


def test_a_gain_on_every_sample_is_sure_and_a_gain_carried_by_luck_is_not():
    baseline = _powers([0.01] * 16)  # 20 dB
    better = gain(baseline, _powers([0.005] * 16))
    assert better.sure and abs(better.db - 3.0103) < 1e-3 and better.low_db > 2.9
    # better on 14 samples, much worse on 2: a positive point figure (+0.17 dB) that resampling can reverse
    lucky = gain(baseline, _powers([0.006] * 14 + [0.035] * 2))
    assert 0 < lucky.db < 0.3 and lucky.low_db < 0 < lucky.high_db and not lucky.sure
    same = gain(baseline, baseline)
    assert same.db == same.low_db == same.high_db == 0 and not same.sure
    assert "over 16 samples" in lucky.describe()


def test_an_exact_match_counts_as_a_ceiling_not_infinity():
    exact, close = _powers([0.0] * 4), _powers([1e-12] * 4)
    assert np.isfinite(gain(close, exact).db) and gain(close, exact).db >= 0


def test_powers_of_outputs_per_sample():
    wanted = [[np.ones(4, np.float32), np.full(2, 2.0, np.float32)]] * 3
    got = [[np.ones(4, np.float32) * 1.1, np.full(2, 2.0, np.float32)]] * 3
    p = Powers.of(wanted, got)
    assert p.signal.shape == (2, 3) and np.allclose(p.noise[0], 0.04) and np.all(p.noise[1] == 0)
    assert abs(p.worst_db()[0] - 10 * np.log10(4 / 0.04)) < 1e-4


def test_an_agreement_budget_met_on_20_samples_is_said_to_be_unsure():
    from edgeq.scoring.held_back import few_samples_notes, proportion_interval

    low, high = proportion_interval(1.0, 20)
    assert 0.85 < low < 0.9 and high > 0.9999  # 20 of 20 agree: the agreement may be 0.88
    (note,) = few_samples_notes({"min_agreement": 0.99}, [1.0], 20)
    assert "judged on 20 --eval-data samples" in note and "reaches below the 0.99 asked" in note
    assert few_samples_notes({"min_agreement": 0.9}, [0.99], 2000) == []  # 2000 samples: the interval stays above
    (sqnr,) = few_samples_notes({"min_sqnr": 25.0}, [], 20)
    assert "SQNR budget was judged on 20" in sqnr and few_samples_notes({"min_sqnr": 25.0}, [], 64) == []


def test_every_third_sample_or_sequence_is_held_back_and_too_few_hold_none():
    from edgeq.scoring.held_back import Split

    assert Split.of(12).held_back == (2, 5, 8, 11) and len(Split.of(12).tuning) == 8
    assert Split.of(9) == Split(tuple(range(9)), ())  # 3 held back would confirm nothing
    starts = {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44}  # twelve sequences of four steps
    split = Split.of(48, starts)
    assert split.held_back == tuple(i for s in (8, 20, 32, 44) for i in range(s, s + 4))  # whole sequences
    assert Split.starts_within(split.held_back, starts) == {0, 4, 8, 12}


def test_where_outputs_decide_a_candidate_that_agrees_less_often_is_never_better():
    """The OCR model of issue 49, whose `--refine auto` raised the SQNR and lost 10 points of
    sequence match: decisions (argmax over the last axis, per step) judge first."""
    rng = np.random.default_rng(0)
    wanted = [[rng.normal(size=(1, 20, 8)).astype(np.float32)] for _ in range(16)]

    def candidate(noise: float, flipped: int) -> list[list[np.ndarray]]:
        got = []
        for (w,) in wanted:
            g = w + noise * rng.normal(size=w.shape).astype(np.float32)
            winners = np.argmax(w, -1)
            for step in range(flipped):  # the runner-up wins at the first `flipped` steps
                g[0, step, winners[0, step]] -= 100
            got.append([g])
        return got

    plain = Powers.of(wanted, candidate(0.02, 0), {0: "sequence"})
    assert plain.agreed is not None and plain.agreed.shape == (1, 16) and plain.agreed.min() > 0.9
    fewer = Powers.of(wanted, candidate(0.0, 2), {0: "sequence"})  # nearly exact but for 2 of 20 steps: 10 points fewer
    assert np.allclose(fewer.agreed, 0.9)
    worse = gain(plain, fewer)
    assert worse.points is not None and worse.points[0] < -5 and not worse.sure
    assert "decisions agreeing with float" in worse.describe()
    # a better SQNR, its decisions within what 16 samples tell of the plain ones (near-ties flip both ways): sure
    alike = gain(plain, Powers.of(wanted, candidate(0.005, 0), {0: "sequence"}))
    assert alike.points is not None and alike.points[1] < 0 < alike.points[2] and alike.db > 3 and alike.sure
    # without deciding outputs, the SQNR alone judges, as before
    assert gain(Powers.of(wanted, candidate(0.02, 0)), Powers.of(wanted, candidate(0.0, 2))).points is None


def test_a_masks_decisions_are_its_iou_and_a_scores_its_side_of_the_threshold():
    from edgeq.scoring.held_back import agreement

    want = np.array([[0.9, 0.8, 0.1, 0.2]])
    assert agreement("mask", want, np.array([[0.9, 0.4, 0.6, 0.2]])) == 1 / 3  # one pixel of the three either marks
    assert agreement("mask", np.zeros((1, 4)), np.full((1, 4), 0.49)) == 1.0  # both empty
    assert agreement("score", want, np.array([[0.9, 0.4, 0.6, 0.2]])) == 0.5
    assert agreement("classes", want, np.array([[0.1, 0.8, 0.1, 0.2]])) == 0.0
