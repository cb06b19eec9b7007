"""The activation-range choosers on synthetic histograms, and --keep-float resolved against the
checked-in models' own op and tensor names: no TensorFlow, no conversion."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES

from edgeq.conversion.calibration.methods import BINS, choose, clipped_fraction
from edgeq.conversion.quantize import not_kept, resolve_keep_float
from edgeq.core.errors import UsageError
from edgeq.records.recipe import Method
from edgeq.tflite.model import read_tflite
from edgeq.tflite.summary import FloatOp


def histogram(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    counts, _ = np.histogram(values, bins=BINS, range=(lo, hi))
    return counts


@pytest.fixture
def outlier() -> tuple[np.ndarray, float, float]:
    """A normal bulk in [-3, 3] and one value at 100: min/max spends the range on the outlier."""
    values = np.append(np.random.default_rng(0).normal(0, 1, 100_000), 100.0)
    return histogram(values, -5.0, 100.0), -5.0, 100.0


def test_minmax_keeps_the_calibrated_range(outlier):
    counts, lo, hi = outlier
    assert choose(Method("minmax"), counts, lo, hi) == (lo, hi)


@pytest.mark.parametrize("method, most", [("percentile:99.99", 10.0), ("mse", 95.0), ("entropy", 95.0)])
def test_the_other_methods_clip_a_lone_outlier_and_keep_the_bulk(method, most, outlier):
    """Percentile drops the outlier's stretch; MSE and entropy, which weigh the bulk's rounding
    against the one clipped value, shrink the range less (measured: 87.7 and 71.4)."""
    counts, lo, hi = outlier
    a, b = choose(Method.parse(method), counts, lo, hi)
    assert 3.0 < b < most and lo <= a < -2.0  # the bulk stays inside
    assert 0 < clipped_fraction(counts, lo, hi, (a, b)) < 0.001  # only the outlier (and the far tail) is clipped


def test_a_uniform_histogram_keeps_nearly_all_of_its_range():
    counts = histogram(np.random.default_rng(1).uniform(0, 6, 200_000), 0.0, 6.0)
    for method in ("percentile:99.99", "mse", "entropy"):
        a, b = choose(Method.parse(method), counts, 0.0, 6.0)
        assert a == pytest.approx(0.0, abs=0.05) and b > 5.0, method


def test_an_empty_histogram_keeps_minmax():
    assert choose(Method("entropy"), np.zeros(BINS, np.int64), -1.0, 1.0) == (-1.0, 1.0)


def test_keep_float_by_op_type_layer_name_and_exact_tensor_name():
    model = read_tflite(FIXTURES / "tflite" / "tiny_float.tflite")  # a Keras CNN: conv_1, flatten_1, probs_1
    keep = resolve_keep_float(model, ("softmax", "conv", "functional_1/probs_1/MatMul2"))
    assert keep.ops == ("SOFTMAX",) and keep.per_name["softmax"] == 1
    assert keep.nodes == ("functional_1/conv_1/Relu;functional_1/conv_1/convolution", "functional_1/probs_1/MatMul2")
    assert keep.per_name == {"softmax": 1, "conv": 1, "functional_1/probs_1/MatMul2": 1}  # conv matched conv_1 (suffixed)


def test_an_unknown_keep_float_name_lists_what_the_model_has():
    model = read_tflite(FIXTURES / "onnx2tf" / "small_cnn_float32.tflite")
    with pytest.raises(
        UsageError,
        match=r"--keep-float dense: no op type or layer of that name.*op types: CONV_2D, "
        r"FULLY_CONNECTED, MEAN, PAD, SOFTMAX",
    ):
        resolve_keep_float(model, ("dense",))


def test_a_kept_node_is_recognised_after_the_quantizer_renames_it():
    keep = resolve_keep_float(read_tflite(FIXTURES / "tflite" / "tiny_float.tflite"), ("functional_1/probs_1/MatMul2",))
    renamed = FloatOp(5, "FULLY_CONNECTED", ("functional_1/probs_1/MatMul21",))  # the quantizer appended a digit
    other = FloatOp(6, "SOFTMAX", ("StatefulPartitionedCall_1:0",))
    assert not_kept([renamed, other], keep) == [other]


def test_nodes_named_matches_each_name_against_each_node_in_one_pass():
    """The quantizer's renamings (a digit appended, activations fused with ';'): the same nodes as
    matching every name part against every node, the way it was done before."""
    from edgeq.conversion.quantize import nodes_named

    def one_by_one(names, nodes):
        def names_it(name, node):
            return any(p == node or (p.startswith(node) and p[len(node) :].isdigit()) for p in (name, *name.split(";")))

        return {n for n in nodes if any(names_it(name, n) for name in names)}

    nodes = ["add_1", "activation_1", "Identity", "m/MatMul2", "m/MatMul", "conv", "x9"]
    names = ["activation_1;add_1", "Identity12", "m/MatMul21", "convolution", "x9;y", "y;x", "add_10", "m/MatMul"]
    for i in range(len(names)):
        assert nodes_named(names[i:], nodes) == one_by_one(names[i:], nodes)
    assert nodes_named(names, nodes) == {"add_1", "activation_1", "Identity", "m/MatMul2", "m/MatMul", "x9"}
