"""The conversion cache: what it reuses is byte-identical to computing it again, what changed misses,
and a damaged entry is ignored with a warning."""

import shutil
import sys

import numpy as np
import pytest
from helpers import convert

from edgeq.core.cache import SUFFIX, Cache, cache_folder
from edgeq.data.samples import Preprocessing

VERSIONS = {"edgeq": "test", "tensorflow_version": "x"}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(folder))
    return folder


# --- the store (no TensorFlow) ---


def test_an_entry_comes_back_as_it_was_stored(tmp_path):
    cache = Cache(tmp_path, VERSIONS)
    cache.store("calibration", "k1", {"a": [1, 2]}, {"tflite": b"TFL3" * 10, "histograms": b""})
    entry = cache.find("calibration", "k1")
    assert entry.header == {"a": [1, 2]} and entry.blobs == {"tflite": b"TFL3" * 10, "histograms": b""}
    assert cache.find("calibration", "k2") is None and cache.find("conversion", "k1") is None
    assert not cache.warnings


@pytest.mark.parametrize("damage", ["flip a blob byte", "truncate", "garbage", "another edgeq"])
def test_a_damaged_or_foreign_entry_is_ignored_with_a_warning_and_removed(tmp_path, damage):
    Cache(tmp_path, VERSIONS).store("calibration", "k", {"a": 1}, {"tflite": bytes(range(256))})
    path = next(tmp_path.glob(f"*{SUFFIX}"))
    content = bytearray(path.read_bytes())
    if damage == "flip a blob byte":
        content[-10] ^= 0xFF
    elif damage == "truncate":
        content = content[:-1]
    elif damage == "garbage":
        content = bytearray(b"\x00" * 40)
    path.write_bytes(bytes(content))
    cache = Cache(tmp_path, {**VERSIONS, "edgeq": "other"} if damage == "another edgeq" else VERSIONS)
    assert cache.find("calibration", "k") is None
    assert len(cache.warnings) == 1 and "ignored a corrupt or stale cache entry" in cache.warnings[0]
    assert not path.exists()


def test_the_folder_stays_within_its_bound_least_recently_used_first(tmp_path):
    cache = Cache(tmp_path, VERSIONS, limit_bytes=2500)
    for key in ("old", "mid", "new"):
        cache.store("calibration", key, {}, {"tflite": bytes(1000)})
    assert cache.find("calibration", "old") is None and cache.find("calibration", "new") is not None
    assert sum(p.stat().st_size for p in tmp_path.glob(f"*{SUFFIX}")) <= 2500


def test_the_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEQ_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "edgeq"
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "own"))
    assert cache_folder() == tmp_path / "own"


# --- conversions (TensorFlow) ---


def _convert(model, data, out, **options):
    result = convert(model, out, data, samples=32, force=True, **options)
    return result.output.read_bytes(), result.manifest.to_json()  # as the manifest file holds it


def test_a_repeat_is_served_whole_with_the_bytes_of_an_uncached_run(cnn_keras, digits_calib, tmp_path, cache_dir):
    first, m1 = _convert(cnn_keras, digits_calib, tmp_path / "a.tflite")
    again, m2 = _convert(cnn_keras, digits_calib, tmp_path / "b.tflite")
    cold, m3 = _convert(cnn_keras, digits_calib, tmp_path / "c.tflite", cache=False)
    assert m1["cache"]["conversion"] == "miss" and m1["cache"]["calibration"] == "miss"
    assert (
        m2["cache"]["conversion"] == "hit"
        and m2["cache"]["calibration"] == "not needed"
        and m3["cache"] == {"conversion": "off", "calibration": "off", "folder": None}
    )
    assert first == again == cold
    # timings: the first run imported TensorFlow and calibrated; the repeat started no child at all
    assert {"import", "load", "calibrate", "quantize"} <= set(m1["timings"]) or {
        "import",
        "load",
        "convert and calibrate",
    } <= set(m1["timings"])
    assert set(m2["timings"]) == {"cache lookup"}


def test_another_io_reuses_the_calibration_and_equals_a_cold_run(cnn_keras, digits_calib, tmp_path, cache_dir):
    _convert(cnn_keras, digits_calib, tmp_path / "a.tflite")
    reused, manifest = _convert(cnn_keras, digits_calib, tmp_path / "b.tflite", io="uint8")
    cold, _ = _convert(cnn_keras, digits_calib, tmp_path / "c.tflite", io="uint8", cache=False)
    assert manifest["cache"]["calibration"] == "hit" and manifest["cache"]["conversion"] == "miss"
    assert "import" not in manifest["timings"] and "load" not in manifest["timings"]  # no TensorFlow, no model load
    assert reused == cold
    assert manifest["calibration"]["fingerprint"] and manifest["inputs"][0]["dtype"] == "uint8"


def test_a_percentile_run_reuses_the_histograms_of_an_entropy_run(cnn_keras, digits_calib, tmp_path, cache_dir):
    _convert(cnn_keras, digits_calib, tmp_path / "a.tflite", calibration="entropy")
    reused, manifest = _convert(cnn_keras, digits_calib, tmp_path / "b.tflite", calibration="percentile:99.9")
    cold, _ = _convert(cnn_keras, digits_calib, tmp_path / "c.tflite", calibration="percentile:99.9", cache=False)
    assert manifest["cache"]["calibration"] == "hit" and reused == cold
    assert manifest["recipe"]["calibration"] == "percentile:99.9"


@pytest.mark.parametrize("change", ["a sample", "preprocessing", "the model", "the seed"])
def test_a_change_in_what_decides_the_ranges_misses(cnn_keras, digits_calib, tmp_path, cache_dir, change):
    data = tmp_path / "data"
    shutil.copytree(digits_calib, data)
    model = tmp_path / "cnn.keras"
    shutil.copy(cnn_keras, model)
    _convert(model, data, tmp_path / "a.tflite")
    options = {}
    if change == "a sample":
        image = sorted(data.rglob("*.png"))[0]
        from PIL import Image

        pixels = np.asarray(Image.open(image)).copy()
        pixels[0, 0] = 255 - pixels[0, 0]
        Image.fromarray(pixels).save(image)
    elif change == "preprocessing":
        options = {"preprocessing": Preprocessing(value_range="-1,1")}
    elif change == "the model":
        import keras

        loaded = keras.models.load_model(model)
        loaded.get_layer("logits").set_weights([w * 1.01 for w in loaded.get_layer("logits").get_weights()])
        loaded.save(model)
    else:
        options = {"seed": 1}
    _, manifest = _convert(model, data, tmp_path / "b.tflite", **options)
    assert manifest["cache"] == {**manifest["cache"], "conversion": "miss", "calibration": "miss"}


def test_a_corrupt_calibration_entry_is_ignored_with_a_warning_and_the_result_is_right(
    cnn_keras, digits_calib, tmp_path, cache_dir, cli
):
    _convert(cnn_keras, digits_calib, tmp_path / "a.tflite")
    entry = next(cache_dir.glob(f"calibration-*{SUFFIX}"))
    content = bytearray(entry.read_bytes())
    content[len(content) // 2] ^= 0xFF
    entry.write_bytes(bytes(content))
    code, out, err = cli(
        "convert", cnn_keras, "-d", digits_calib, "-o", tmp_path / "b.tflite", "--samples", "32", "--io", "uint8"
    )
    assert code == 0, err
    assert "ignored a corrupt or stale cache entry" in err
    cold, _ = _convert(cnn_keras, digits_calib, tmp_path / "c.tflite", io="uint8", cache=False)
    assert (tmp_path / "b.tflite").read_bytes() == cold
    assert "reused" not in out  # nothing came from the cache, so nothing is said of it


def test_no_cache_neither_reads_nor_writes(cnn_keras, digits_calib, tmp_path, cache_dir, cli):
    code, out, err = cli("convert", cnn_keras, "-d", digits_calib, "-o", tmp_path / "a.tflite", "--samples", "32", "--no-cache")
    assert code == 0, err
    assert not cache_dir.exists() or not list(cache_dir.glob(f"*{SUFFIX}"))
    assert "reused" not in out


@pytest.mark.tf
def test_the_quantizer_type_codes_are_tensorflows():
    from tensorflow.compiler.mlir.lite import types_pb2

    from edgeq.frameworks.native_converter import IO_DATA_TYPES, QUANTIZED_INT8

    assert IO_DATA_TYPES == {
        "float32": types_pb2.FLOAT,
        "uint8": types_pb2.UINT8,
        "int8": types_pb2.INT8,
        "int16": types_pb2.INT16,
    }
    assert QUANTIZED_INT8 == types_pb2.QUANTIZED_INT8
    assert "tensorflow" in sys.modules
