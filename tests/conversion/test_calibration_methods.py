"""Activation ranges beyond min/max: percentile, MSE and entropy, and the search that tries them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import convert, validate

from edgeq.records.budget import Budget

pytestmark = pytest.mark.tf
METHODS = ("percentile", "mse", "entropy")


@pytest.fixture(scope="module")
def spiky_calibration(tmp_path_factory):
    """128 digits, two of which carry one stray pixel of 40 (a sensor glitch, a mis-scaled file):
    rare spikes that reach the calibration data in a few samples and widen every range downstream."""
    from conftest import digits_images

    x = digits_images(128)
    x[5, 0, 0, 0] = x[77, 3, 4, 0] = 40.0
    path = tmp_path_factory.mktemp("spiky") / "calib.npy"
    np.save(path, x)
    return path


@pytest.fixture(scope="module")
def outlier_runs(cnn_keras, spiky_calibration, digits_calib, tmp_path_factory):
    """The test CNN calibrated on the spiky samples under every method, scored on clean held-out digits."""
    folder = tmp_path_factory.mktemp("methods")
    runs = {}
    for method in ("minmax", *METHODS):
        result = convert(cnn_keras, folder / f"{method}.tflite", spiky_calibration, samples=128, calibration=method)
        scores = validate(result.output, cnn_keras, digits_calib.parent / "val", runs=2, warmup=0)
        runs[method] = (result, scores.worst_sqnr_db)
    return runs


def test_a_method_beats_minmax_on_heavy_tailed_activations(outlier_runs):
    minmax = outlier_runs["minmax"][1]
    best = max(outlier_runs[m][1] for m in METHODS)
    assert best >= minmax + 3, {m: s for m, (_, s) in outlier_runs.items()}
    winner = max(METHODS, key=lambda m: outlier_runs[m][1])
    ranges = outlier_runs[winner][0].manifest.to_json()["calibration"]["ranges"]
    shrunk = [r for r in ranges if "/conv_1/" in r["tensor"]]  # the first layer's output, past the input
    assert shrunk and shrunk[0]["range_ratio"] < 0.5 and 0 < shrunk[0]["clipped_fraction"] < 0.01


def test_minmax_is_byte_identical_to_the_default(outlier_runs, cnn_keras, spiky_calibration, tmp_path):
    default = convert(cnn_keras, tmp_path / "d.tflite", spiky_calibration, samples=128)
    assert default.output.read_bytes() == outlier_runs["minmax"][0].output.read_bytes()


@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_the_demo_within_one_point(method, trained, digits_calib, tmp_path):
    keras_path, int8, _ = trained
    result = convert(keras_path, tmp_path / "m.tflite", digits_calib, samples=200, calibration=method)
    drop = validate(result.output, keras_path, digits_calib.parent / "val", runs=2, warmup=0).accuracy.top1_drop_pts
    assert drop <= 1.0, (method, drop)


def test_auto_search_stops_at_the_method_that_meets_the_budget(
    outlier_runs, cnn_keras, spiky_calibration, digits_calib, tmp_path
):
    minmax = outlier_runs["minmax"][1]
    best = max(outlier_runs[m][1] for m in METHODS)
    budget = Budget(min_sqnr=(minmax + best) / 2)
    result = convert(
        cnn_keras,
        tmp_path / "a.tflite",
        spiky_calibration,
        samples=128,
        calibration="auto",
        eval_data=str(digits_calib.parent / "val"),
        budget=budget,
    )
    search = result.manifest.search
    assert search.met and search.chosen.k == 0 and search.chosen.float_layers == ()
    assert (search.steps[0].kind, search.steps[0].method) == ("int8", "minmax") and not search.steps[0].meets
    assert not result.manifest.recipe.calibration.is_minmax and not result.manifest.recipe.calibration.is_auto
    assert [a.method for a in result.manifest.calibration.auto][0] == "minmax"
    assert [a.method for a in result.manifest.calibration.auto if a.chosen] == [str(result.manifest.recipe.calibration)]


def test_parallel_histograms_equal_serial_ones(outlier_keras, digits_calib, tmp_path):
    from edgeq.conversion.calibration.calibrate import calibrate
    from edgeq.conversion.calibration.methods import histograms, histograms_parallel
    from edgeq.conversion.calibration.parallel import read_ranges
    from edgeq.data.samples import open_samples
    from edgeq.frameworks.sources import load_source
    from edgeq.records.recipe import Recipe

    source = load_source(outlier_keras)
    samples = list(open_samples(digits_calib, source.specs, limit=24))
    calibrated = calibrate(source, Recipe(), lambda: iter(samples))
    ranges = read_ranges(calibrated)
    one, two = histograms(calibrated, samples, ranges), histograms_parallel(calibrated, samples, ranges, 2)
    assert set(one) == set(two) and all(np.array_equal(one[i], two[i]) for i in one)
    assert sum(int(c.sum()) for c in one.values()) > 0
    a = convert(outlier_keras, tmp_path / "1.tflite", digits_calib, samples=64, calibration="entropy", jobs=1, cache=False)
    b = convert(outlier_keras, tmp_path / "2.tflite", digits_calib, samples=64, calibration="entropy", jobs=2, cache=False)
    assert a.output.read_bytes() == b.output.read_bytes()
    assert (
        json.loads(a.manifest_path.read_text())["calibration"]["ranges"]
        == json.loads(b.manifest_path.read_text())["calibration"]["ranges"]
    )


def test_auto_without_a_budget_takes_another_method_only_when_its_gain_is_sure(trained, digits_calib, tmp_path):
    """30 --eval-data samples: the methods are tried on 20 and the best replaces minmax only when its
    gain on the 10 held back is sure (its 90% interval does not reach below zero); otherwise the
    model is minmax's, byte for byte, and the manifest says why."""
    import re

    from edgeq.data.samples import InputSpec, open_samples

    keras_path, _, _ = trained
    source = open_samples(digits_calib.parent / "val", [InputSpec("image", (1, 8, 8, 1))], limit=30)
    np.savez(tmp_path / "few.npz", image=np.concatenate([s[0] for s in source]))
    auto = convert(keras_path, tmp_path / "a.tflite", digits_calib, calibration="auto", eval_data=str(tmp_path / "few.npz"))
    plain = convert(keras_path, tmp_path / "m.tflite", digits_calib)
    tries = auto.manifest.calibration.auto
    rival = next((t for t in tries if t.gain), None)
    best = max(tries, key=lambda t: t.worst_sqnr_db or 0)
    if best.method == "minmax":
        assert rival is None and tries[0].chosen
        return
    assert rival is best and "over 10 samples) over minmax, on the held-back samples" in rival.gain
    db, low = (float(x) for x in re.search(r"^([+-][\d.]+) dB \(90% interval ([+-][\d.]+) to", rival.gain).groups())
    assert rival.chosen == (db > 0 and low >= 0)
    if not rival.chosen:
        assert tries[0].chosen and auto.output.read_bytes() == plain.output.read_bytes()


def test_a_budget_tuned_on_20_samples_warns_how_little_they_tell(trained, digits_calib, tmp_path, cli):
    """30 --eval-data samples: 20 tune, 10 confirm; an agreement of 1.0 on 10 samples has an interval
    reaching below the 0.95 asked, and the warning says so with both counts."""
    from edgeq.data.samples import InputSpec, open_samples

    keras_path, _, _ = trained
    source = open_samples(digits_calib.parent / "val", [InputSpec("image", (1, 8, 8, 1))], limit=30)
    np.savez(tmp_path / "few.npz", image=np.concatenate([s[0] for s in source]))
    budget = ("--eval-data", tmp_path / "few.npz", "--min-agreement", "95%", "--no-cache")
    code, out, err = cli("convert", keras_path, "-d", digits_calib, "-o", tmp_path / "m.tflite", *budget)
    assert code == 0, err
    assert "judged on 10 held-back (and 20 tuning) --eval-data samples" in err and "reaches below the 0.95 asked" in err


def test_moving_average_ranges_are_ai_edge_quantizers_statistic(cnn_keras, spiky_calibration, tmp_path):
    """moving-average keeps what ai-edge-quantizer's calibrator keeps (a 0.95 moving average of each
    sample's min and max, in order): on the test CNN, every tensor both name alike agrees with
    ai-edge-quantizer 0.10's own calibration of the same float graph on the same samples; and it is
    a --calibration method the recipe carries out."""
    pytest.importorskip("ai_edge_quantizer", reason="ai-edge-quantizer comes with the convert extra")
    from ai_edge_quantizer import quantizer, recipe

    from edgeq.conversion.calibration.calibrate import calibrate
    from edgeq.conversion.calibration.methods import moving_averages
    from edgeq.conversion.calibration.parallel import read_ranges
    from edgeq.conversion.options import ConvertOptions
    from edgeq.frameworks.sources import load_source
    from edgeq.tflite.model import parse_tflite

    samples = [[x[None]] for x in np.load(spiky_calibration)[:40]]
    source = load_source(cnn_keras)
    calibrated = calibrate(source, ConvertOptions.of().recipe, lambda: iter(samples))
    ours = moving_averages(calibrated, samples, read_ranges(calibrated))
    names = {parse_tflite(calibrated).tensors[i].name: r for i, r in ours.items()}
    (tmp_path / "float.tflite").write_bytes(source.make_converter().convert())
    qt = quantizer.Quantizer(str(tmp_path / "float.tflite"))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    theirs = qt.calibrate({"serving_default": [{"image": s[0]} for s in samples]})
    shared = [n for n in names if n in theirs]
    assert len(shared) >= 3
    for name in shared:
        low, high = np.asarray(theirs[name]["min"]), np.asarray(theirs[name]["max"])
        assert low.size == high.size == 1, (name, low.shape)  # one range per tensor, as edgeq's
        assert np.allclose(names[name], (low.item(), high.item()), rtol=1e-4, atol=1e-6), (name, names[name], low, high)
    result = convert(cnn_keras, tmp_path / "m.tflite", spiky_calibration, samples=40, calibration="moving-average")
    assert str(result.manifest.recipe.calibration) == "moving-average" and result.manifest.calibration.ranges
