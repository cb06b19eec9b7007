"""Parallel calibration: TensorFlow's own calibrator in worker processes, ranges merged."""

import sys

import pytest

from edgeq.conversion.parallel_calibration import (
    ParallelCalibrator,
    read_ranges,
)
from edgeq.conversion.extensions import calibration_wrapper_file
from edgeq.conversion.converter import convert
from edgeq.data.samples import InputSpec, open_samples
from edgeq.errors import ConversionError
from edgeq.tflite.model import parse_tflite


def _calibrate_only(keras_path, samples) -> bytes:
    """The plain converter's calibrate step (TensorFlow's serial calibrator) on `samples`."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_path)
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((1, 8, 8, 1), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True
    return converter.convert()


@pytest.fixture(scope="module")
def samples(digits_calib):
    return list(open_samples(digits_calib, [InputSpec("image", (1, 8, 8, 1))], limit=64))


def test_parallel_calibration_writes_the_serial_calibrators_model_byte_for_byte(cnn_keras, samples):
    serial = _calibrate_only(cnn_keras, samples)
    once = _calibrate_only(cnn_keras, samples[:1])
    assert read_ranges(once) != read_ranges(serial)  # one sample does not already give the answer
    with ParallelCalibrator(2) as workers:
        merged = workers.calibrate(once, samples)
    assert merged == serial
    activations = {t.index for t in parse_tflite(merged).tensors if t.dtype == "float32" and not t.is_constant}
    assert set(read_ranges(merged)) == activations  # every activation got a range


def test_jobs_1_and_jobs_2_give_the_same_model(cnn_keras, digits_calib, tmp_path):
    one = convert(cnn_keras, tmp_path / "one.tflite", digits_calib, samples=64, jobs=1, cache=False)
    two = convert(cnn_keras, tmp_path / "two.tflite", digits_calib, samples=64, jobs=2, cache=False)
    assert one.manifest.calibration.jobs == 1 and two.manifest.calibration.jobs == 2
    assert one.output.read_bytes() == two.output.read_bytes()
    assert one.manifest.calibration.fingerprint == two.manifest.calibration.fingerprint


def test_workers_use_the_calibration_module_the_converter_loads():
    from tensorflow.lite.python.optimize import calibrator

    calibrator._calibration_wrapper.CalibrationWrapper  # noqa: B018 - forces the lazy import
    assert calibration_wrapper_file() == sys.modules[calibrator._calibration_wrapper.__name__].__file__


def test_a_failing_worker_is_one_conversion_error(samples):
    with pytest.raises(ConversionError, match="calibration worker"), ParallelCalibrator(2) as workers:
        workers.calibrate(b"TFL3" + bytes(4096), samples)


def test_jobs_must_be_positive(cnn_keras, digits_calib, tmp_path, cli):
    code, _, err = cli("convert", str(cnn_keras), "-d", str(digits_calib), "-o", str(tmp_path / "m.tflite"), "--jobs", "0")
    assert code == 2 and "--jobs must be at least 1" in err
    assert not (tmp_path / "m.tflite").exists()
