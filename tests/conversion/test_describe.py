"""What the manifest says of a converted model."""

from __future__ import annotations

import pytest
from helpers import FIXTURES

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_strict_int8_names_float_weights_not_a_missing_kernel():
    """The litert-torch fixture is float: its CONV_2D and FULLY_CONNECTED ops are float because their weights are."""
    from edgeq.conversion.describe import check_strict
    from edgeq.conversion.options import ConvertOptions
    from edgeq.core.errors import ConversionError
    from edgeq.records.manifest import KeepFloat
    from edgeq.tflite.model import read_tflite
    from edgeq.tflite.summary import summarize

    model = read_tflite(FIXTURES / "litert_torch" / "small_cnn.tflite")
    with pytest.raises(ConversionError, match=r"the weights of CONV_2D .* stayed float32, so the op did \(it has int8 kernels\)"):
        check_strict(model, summarize(model), ConvertOptions(), KeepFloat())
