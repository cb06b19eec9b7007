"""Sample loading, preprocessing and the audit, on the bundled PNGs and on generated arrays."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeq.core.errors import DataError, UsageError
from edgeq.data.samples import Audit, InputSpec, Preprocessing, open_samples

GRAY = [InputSpec("image", (1, 8, 8, 1))]


def _take(source):
    return [s[0] for s in source]


def test_image_folder_labels_and_values(digits_calib):
    source = open_samples(digits_calib, GRAY, limit=50)
    images = _take(source)
    assert len(images) == len(source) == 50
    assert all(x.shape == (1, 8, 8, 1) and x.dtype == np.float32 for x in images)
    assert source.class_names == [str(d) for d in range(10)]
    first = source.files[0]
    assert source.labels[0] == int(first.parent.name)
    expected = np.asarray(Image.open(first), np.float32) / 255.0
    np.testing.assert_allclose(images[0][0, :, :, 0], expected, atol=1e-6)


def test_seeded_shuffle_is_deterministic_and_seed_dependent(digits_calib):
    a = open_samples(digits_calib, GRAY, limit=20, seed=3).files
    b = open_samples(digits_calib, GRAY, limit=20, seed=3).files
    c = open_samples(digits_calib, GRAY, limit=20, seed=4).files
    assert a == b and a != c
    assert len({p.parent.name for p in a}) > 3  # shuffled across classes, not the first folder


@pytest.mark.parametrize(("value_range", "lo", "hi"), [("0,1", 0, 1), ("-1,1", -1, 1), ("0,255", 0, 255)])
def test_ranges(tmp_path, value_range, lo, hi):
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "a.png")
    (x,) = _take(open_samples(tmp_path, [InputSpec("i", (1, 1, 2, 1))], Preprocessing(value_range=value_range)))
    assert x.ravel().tolist() == [lo, hi]


def test_mean_std_per_channel(tmp_path):
    Image.new("RGB", (2, 2), (10, 20, 30)).save(tmp_path / "a.png")
    pre = Preprocessing(mean=(10.0, 10.0, 10.0), std=(1.0, 2.0, 4.0))
    (x,) = _take(open_samples(tmp_path, [InputSpec("i", (1, 2, 2, 3))], pre))
    assert x[0, 0, 0].tolist() == [0.0, 5.0, 5.0]


def test_gray_image_becomes_rgb_and_rgb_becomes_gray(tmp_path):
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "g.png")
    (x,) = _take(open_samples(tmp_path, [InputSpec("i", (1, 4, 4, 3))]))
    assert x.shape == (1, 4, 4, 3) and np.allclose(x, 200 / 255)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).convert("RGBA").save(rgb / "r.webp")
    (y,) = _take(open_samples(rgb, [InputSpec("i", (1, 4, 4, 1))]))
    assert y.shape == (1, 4, 4, 1) and 0.2 < y.mean() < 0.4  # luma of pure red


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_resize_modes(tmp_path, mode):
    pixels = np.zeros((10, 20), np.uint8)
    pixels[:, :5] = 255  # a white band on the left quarter
    Image.fromarray(pixels).save(tmp_path / "wide.bmp")
    (x,) = _take(open_samples(tmp_path, [InputSpec("i", (1, 10, 10, 1))], Preprocessing(resize=mode)))
    column_means = x[0, :, :, 0].mean(axis=0)
    assert x.shape == (1, 10, 10, 1)
    if mode == "stretch":  # band squeezed to the left quarter
        assert column_means[0] > 0.9 and column_means[-1] < 0.1
    elif mode == "crop":  # centre crop cuts the band away
        assert column_means.max() < 0.1
    else:  # padded top and bottom with black
        assert x[0, 0, :, 0].max() == 0 and column_means[0] > 0.3


def test_npz_for_two_inputs_and_mismatched_counts(tmp_path):
    specs = [InputSpec("a", (1, 4)), InputSpec("b", (1, 6))]
    np.savez(tmp_path / "ok.npz", a=np.ones((5, 4)), b=np.zeros((5, 6)))
    samples = list(open_samples(tmp_path / "ok.npz", specs))
    assert len(samples) == 5 and samples[0][0].shape == (1, 4) and samples[0][1].shape == (1, 6)
    np.savez(tmp_path / "bad.npz", a=np.ones((5, 4)), b=np.zeros((4, 6)))
    with pytest.raises(DataError, match="different"):
        open_samples(tmp_path / "bad.npz", specs)
    np.savez(tmp_path / "missing.npz", a=np.ones((5, 4)))
    with pytest.raises(DataError, match=r"\['b'\]"):
        open_samples(tmp_path / "missing.npz", specs)


def test_npy_streams_from_a_memory_map(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6 * 4, dtype=np.float64).reshape(6, 4))
    source = open_samples(tmp_path / "x.npy", [InputSpec("x", (1, 4))], limit=3, seed=0)
    assert isinstance(source.arrays["x"], np.memmap)
    rows = [s[0] for s in source]
    assert [r.dtype for r in rows] == [np.float32] * 3
    assert sorted(int(r[0, 0]) // 4 for r in rows) == sorted(source.indices.tolist())


def test_audit_warns_on_constant_identical_and_out_of_range(tmp_path):
    np.save(tmp_path / "same.npy", np.full((5, 3), 300.0, np.float32))
    spec = [InputSpec("x", (1, 3))]
    source = open_samples(tmp_path / "same.npy", spec)
    audit = Audit(spec, Preprocessing(value_range="0,1").expected_range())
    assert len(list(audit.watch(source))) == 5
    text = " ".join(audit.warnings())
    assert "identical" in text and "constant" in text and "outside the expected [0, 1]" in text


def test_audit_is_quiet_on_good_data_and_fingerprints_content(digits_calib):
    source = open_samples(digits_calib, GRAY, limit=30)
    a, b = Audit(GRAY, (0.0, 1.0)), Audit(GRAY, (0.0, 1.0))
    list(a.watch(source))
    list(b.watch(open_samples(digits_calib, GRAY, limit=30, seed=9)))
    assert a.warnings() == [] and a.count == 30
    assert a.fingerprint != b.fingerprint


def test_usage_errors():
    with pytest.raises(UsageError, match="--mean and --std go together"):
        Preprocessing(mean=(1.0,))
    with pytest.raises(UsageError, match="--resize 'zoom': use stretch, crop or pad"):
        Preprocessing(resize="zoom")
    with pytest.raises(UsageError, match="--std must not contain 0"):
        Preprocessing(mean=(0.0,), std=(0.0,))


def test_image_folder_for_a_non_image_model(digits_calib):
    with pytest.raises(DataError, match="npz"):
        open_samples(digits_calib, [InputSpec("a", (1, 4)), InputSpec("b", (1, 6))])


def test_an_input_whose_first_axis_is_not_the_batch_is_fed_as_the_model_declares_it(tmp_path):
    """A recurrent state [layers, 1, units]: one sample is the whole [2, 1, 16] array, not a row of it."""
    import numpy as np

    from edgeq.core.errors import DataError
    from edgeq.data.samples import InputSpec, open_samples

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "s.npz", x=rng.normal(size=(5, 10)).astype(np.float32), state=rng.normal(size=(5, 2, 1, 16)).astype(np.float32)
    )
    specs = [InputSpec("x", (1, 10)), InputSpec("state", (2, 1, 16))]
    samples = list(open_samples(tmp_path / "s.npz", specs))
    assert [a.shape for a in samples[0]] == [(1, 10), (2, 1, 16)] and len(samples) == 5
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 10), np.float32), state=np.zeros((5, 1, 16), np.float32))
    with pytest.raises(
        DataError,
        match=r"array for input 'state' has shape \[5, 1, 16\]; the model declares the input "
        r"\[2, 1, 16\], so edgeq feeds arrays shaped \[N, 2, 1, 16\] \(N samples\)",
    ):
        open_samples(tmp_path / "bad.npz", specs)
