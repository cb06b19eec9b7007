"""Calibration: the calibrated graph on XNNPACK (TensorFlow's ranges within float rounding), and
TensorFlow's own calibrator in worker processes for graphs XNNPACK's run cannot show."""

import sys

import pytest
from helpers import convert

from edgeq.conversion.calibration.parallel import (
    ParallelCalibrator,
    read_ranges,
)
from edgeq.core.errors import ConversionError
from edgeq.data.samples import InputSpec, open_samples
from edgeq.frameworks.native_converter import calibration_wrapper_file
from edgeq.tflite.model import parse_tflite

pytestmark = pytest.mark.tf  # TensorFlow's calibrator, in every test


def _calibrate_only(keras_path, samples) -> bytes:
    """The plain converter's calibrate step (TensorFlow's serial calibrator) on `samples`."""
    import keras

    return _calibrate_model(keras.models.load_model(keras_path), samples)


def _calibrate_model(model, samples) -> bytes:
    import tensorflow as tf

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


@pytest.fixture(scope="module")
def residual():
    """conv -> conv + skip (an ADD the built-in kernels run in place) -> conv: the in-place quirk of
    TensorFlow's calibrator shows on the ADD's input."""
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input((8, 8, 1), batch_size=1)
    a = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    b = keras.layers.Conv2D(6, 3, padding="same")(a)
    y = keras.layers.Conv2D(4, 3, padding="same")(keras.layers.Add()([keras.layers.Conv2D(6, 1)(a), b]))
    return keras.Model(x, y)


def _relative_differences(ours, theirs):
    return {i: max(abs(ours[i][0] - lo), abs(ours[i][1] - hi)) / max(hi - lo, 1e-30) for i, (lo, hi) in theirs.items()}


def test_xnnpack_calibration_gives_tensorflows_ranges(residual, samples):
    """Every tensor's range is the serial calibrator's within float rounding; the ADD's in-place
    input gets the ADD's range, as TensorFlow's calibrator logs it (without the quirk it would not)."""
    from edgeq.conversion.calibration.observed import calibrated_on_xnnpack, in_place, observable, observed_ranges

    serial = read_ranges(_calibrate_model(residual, samples))
    once = _calibrate_model(residual, samples[:1])
    assert observable(once)
    ours = read_ranges(calibrated_on_xnnpack(once, samples, threads=2))
    assert set(ours) == set(serial)
    assert max(_relative_differences(ours, serial).values()) < 1e-5
    pairs = in_place(once, [(1, 8, 8, 1)])
    assert pairs  # the ADD runs in place
    source, target = pairs[0]
    assert serial[source][0] <= serial[target][0] and serial[target][1] <= serial[source][1]  # TensorFlow's quirk
    assert ours[source] != _own_range(once, samples, source)  # and ours: the input's own values give another range
    assert observed_ranges(once, samples, threads=1) == observed_ranges(once, samples, threads=2)  # threads change nothing


def test_an_all_negative_tensor_gets_tensorflows_max(samples):
    """TensorFlow's logger starts every max at the smallest positive float: a tensor below zero
    everywhere is recorded up to 1.2e-38, and so it is here."""
    import keras

    from edgeq.conversion.calibration.observed import calibrated_on_xnnpack

    keras.utils.set_random_seed(4)
    x = keras.Input((8, 8, 1), batch_size=1)
    negative = keras.layers.Rescaling(-1.0, offset=-0.5)(keras.layers.Dense(4, activation="relu")(keras.layers.Flatten()(x)))
    model = keras.Model(x, negative)  # the graph's output: nothing folds the MUL and ADD away
    serial = read_ranges(_calibrate_model(model, samples))
    ours = read_ranges(calibrated_on_xnnpack(_calibrate_model(model, samples[:1]), samples, threads=1))
    assert any(lo < 0 and 0 < hi < 1e-37 for lo, hi in serial.values())  # the quirk is there
    assert max(_relative_differences(ours, serial).values()) < 1e-5


def _own_range(model: bytes, samples, index: int) -> tuple[float, float]:
    """The tensor's own values' range, every tensor kept (no buffer shared)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    low, high = np.inf, -np.inf
    for sample in samples:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[0])
        interpreter.invoke()
        values = interpreter.get_tensor(index)
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def test_a_stateful_graph_is_calibrated_by_tensorflows_calibrator():
    """A graph with a state variable is not observable: its inputs are logged after the op changed them."""
    import tensorflow as tf

    from edgeq.conversion.calibration.observed import observable

    class Counter(tf.Module):
        def __init__(self):
            self.total = tf.Variable(tf.zeros((1, 4)))

        @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
        def __call__(self, x):
            self.total.assign_add(x)
            return self.total * 2.0

    module = Counter()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter([[tf.ones((1, 4))]])
    converter._experimental_calibrate_only = True
    assert not observable(converter.convert())


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
