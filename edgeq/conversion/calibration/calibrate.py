"""TensorFlow's calibrated graph: the converter with `_experimental_calibrate_only` (or, for a
float .tflite, the flatbuffer calibrator the converter itself runs), min/max on every tensor.

Full-integer modes run TensorFlow's own two steps separately: calibrate here, then quantize
(edgeq.conversion.quantize). Splitting them lets edgeq keep chosen layers in float, choose the
ranges and audit the model in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from edgeq.core.timing import phase
from edgeq.host.isolation import step
from edgeq.records.recipe import Mode, Recipe


def keyed(source):
    """Samples (lists in input order) as {input key: array}, which the converter maps by signature;
    as they are where the converter's model has no signature, or they are keyed already."""
    if len(source.signatures) > 1 or not source.keyed:
        return lambda samples: samples
    names = [s.name for s in source.specs]
    return lambda samples: (dict(zip(names, sample)) for sample in samples)


def calibrate(source, recipe: Recipe, samples: Callable[[], Iterable[Any]], phase_name: str = "convert and calibrate") -> bytes:
    """The calibrated float model (min/max on every tensor) of `source` on `samples()`, which
    yields lists of arrays in the order of `source.specs` (or, for several signatures, keyed pairs)."""
    import tensorflow as tf

    if source.flatbuffer is not None:  # what the converter itself runs after converting: the flatbuffer calibrator
        from tensorflow.lite.python.optimize.calibrator import Calibrator

        step("calibrating (TensorFlow's flatbuffer calibrator)")
        with phase(phase_name):
            return Calibrator(source.flatbuffer).calibrate(lambda: keyed(source)(samples()))
    with phase("export"):
        converter = source.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: keyed(source)(samples())
    step("calibrating (TensorFlow's converter and calibrator)")
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe.mode == Mode.INT8_FALLBACK or recipe.keep_float:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
    converter._experimental_calibrate_only = True
    with phase(phase_name):
        return converter.convert()
