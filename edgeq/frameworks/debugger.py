"""TensorFlow's QuantizationDebugger, driven for edgeq.analysis.per_layer: the only TensorFlow
call of the per-layer analysis, kept on the frameworks floor."""

from __future__ import annotations

import io
from collections.abc import Callable

from edgeq.core.errors import AnalysisError


def layer_statistics(debug_model: bytes, feeds: list, metrics: dict[str, Callable[..., float]]) -> str:
    """The debugger's layer statistics (its CSV text) for the NumericVerify `debug_model` on
    `feeds`, with `metrics` (name -> f(float values, quantized, scale, zero point)) as extra columns."""
    import tensorflow as tf

    from edgeq.frameworks.sources import first_line

    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=metrics)
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=lambda: iter(feeds), debug_options=options
        )
        debugger.run()
    except (ValueError, RuntimeError) as exc:
        raise AnalysisError(f"TensorFlow's QuantizationDebugger failed on the debug model: {first_line(exc)}") from exc
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    return dump.getvalue()
