"""Equivalent rewrites of Keras models that make them convert to full int8, each proven equal to
the original in float before it is used.

Recurrent layers: Keras 3's LSTM/GRU/SimpleRNN lower to a WHILE loop over TensorList ops, which
the full-integer converter cannot quantize (a plain converter script fails, and the calibration
step can crash natively). With a fixed sequence length the same layer unrolled (`unroll=True`, same
weights) is a straight graph of FULLY_CONNECTED and elementwise ops that quantizes to int8.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeq.core.errors import ModelError

RECURRENT = ("LSTM", "GRU", "SimpleRNN")
TOLERANCE = 1e-5


def recurrent_layers(model) -> list[str]:
    """Names of the recurrent layers (also inside Bidirectional) that run as a loop."""
    found = []
    for layer in _walk(model):
        if type(layer).__name__ in RECURRENT and not getattr(layer, "unroll", False):
            found.append(layer.name)
    return found


def _walk(model):
    for layer in getattr(model, "layers", []):
        yield layer
        for inner in ("forward_layer", "backward_layer", "layer"):
            if hasattr(layer, inner):
                yield getattr(layer, inner)
        if hasattr(layer, "layers"):
            yield from _walk(layer)


def unrolled(model, shapes: list[tuple[int, ...]]) -> tuple[Any, str]:
    """A copy of `model` with every recurrent layer unrolled over the fixed input `shapes`, the
    original's weights, and its float outputs checked equal on random inputs; and a note saying so."""
    names = recurrent_layers(model)
    config = copy.deepcopy(model.get_config())
    _patch(config, shapes)
    clone, diff = _checked_clone(
        model,
        lambda: type(model).from_config(config),
        shapes,
        TOLERANCE,
        f"the recurrent layer(s) {', '.join(names)} cannot be unrolled for int8",
        f"unrolling {', '.join(names)}",
        "rebuild them with unroll=True, or convert with --mode dynamic",
    )
    steps = sorted({shape[1] for shape in shapes if len(shape) >= 2})
    return clone, (
        f"unrolled recurrent layer(s) {', '.join(names)} over {'/'.join(map(str, steps))} steps "
        f"(same weights; float outputs equal the original's, max abs diff {diff:.2g})"
    )


def _checked_clone(
    model, build: Callable[[], Any], shapes: list[tuple[int, ...]], tolerance: float, cannot: str, doing: str, remedy: str
) -> tuple[Any, float]:
    """`build()` with the original's weights, refused unless its float outputs equal the original's."""
    try:
        clone = build()
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise ModelError(f"{cannot} ({exc}); {remedy}") from exc
    diff = float_difference(model, clone, shapes)
    if diff > tolerance:
        raise ModelError(f"{doing} changed the float outputs (max abs diff {diff:.3g}); {remedy}")
    return clone, diff


def float_difference(model, clone, shapes: list[tuple[int, ...]]) -> float:
    """The largest absolute difference of the two models' float outputs on seeded random inputs:
    the proof a rewrite must pass before it is converted."""
    import keras

    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    args = feeds if len(feeds) > 1 else feeds[0]
    want = keras.tree.flatten(model(args, training=False))
    got = keras.tree.flatten(clone(args, training=False))
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(want, got))


def _patch(config: Any, shapes: list[tuple[int, ...]]) -> None:
    """unroll=True on every recurrent layer config; the input layers get the fixed shapes."""
    inputs = iter(shapes)
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in RECURRENT and isinstance(node.get("config"), dict):
                node["config"]["unroll"] = True
            if node.get("class_name") == "InputLayer" and isinstance(node.get("config"), dict):
                shape = next(inputs, None)
                if shape is not None:
                    key = "batch_shape" if "batch_shape" in node["config"] else "batch_input_shape"
                    node["config"][key] = [None, *shape[1:]]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def layer_norms(model) -> list[str]:
    """LayerNormalization layers over the last axis, which lower to a NEG that has no int8 kernel."""
    return [
        layer.name
        for layer in _walk(model)
        if type(layer).__name__ == "LayerNormalization"
        and not getattr(layer, "rms_scaling", False)
        and list(_axes(layer)) == [-1]
    ]


def _axes(layer) -> list[int]:
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input.shape) if hasattr(layer, "input") else None
    return [a - rank if rank is not None and a >= 0 else a for a in axis]


def _plain_layer_norm_class():
    import keras
    from keras import ops

    class PlainLayerNorm(keras.layers.Layer):
        """LayerNormalization as (x - mean) * rsqrt(var + eps) * gamma + beta: MEAN, SUB, MUL, RSQRT
        and ADD, which all have int8 kernels (Keras' own lowering computes beta - mean * inv, a NEG)."""

        def __init__(self, original, **kwargs):
            super().__init__(name=original.name, dtype=original.dtype_policy, **kwargs)
            self.epsilon, self.center, self.scale = original.epsilon, original.center, original.scale
            self.original = original

        def build(self, input_shape):
            self.gamma = self.original.gamma if self.scale else None
            self.beta = self.original.beta if self.center else None

        def call(self, x):
            mean = ops.mean(x, axis=-1, keepdims=True)
            centred = x - mean
            variance = ops.mean(centred * centred, axis=-1, keepdims=True)
            y = centred * ops.rsqrt(variance + self.epsilon)
            if self.gamma is not None:
                y = y * self.gamma
            if self.beta is not None:
                y = y + self.beta
            return y

    return PlainLayerNorm


def without_neg(model, shapes: list[tuple[int, ...]], tolerance: float = TOLERANCE) -> tuple[Any, str]:
    """A copy of `model` whose LayerNormalization layers compute without NEG, sharing the weights;
    float outputs checked equal (to float rounding) on random inputs."""
    import keras

    names = layer_norms(model)
    plain = _plain_layer_norm_class()

    def replace(layer):  # nested models (ConvNeXt's stem and blocks) are cloned layer by layer too
        if layer.name in names:
            return plain(layer)
        if hasattr(layer, "layers") and any(l.name in names for l in _walk(layer)):
            return keras.models.clone_model(layer, clone_function=replace)
        return layer.__class__.from_config(layer.get_config())

    clone, diff = _checked_clone(
        model,
        lambda: keras.models.clone_model(model, clone_function=replace),
        shapes,
        tolerance,
        f"LayerNormalization {', '.join(names)} cannot be rewritten for int8",
        f"rewriting LayerNormalization {', '.join(names)}",
        "convert with --mode int8-fallback (it keeps NEG in float)",
    )
    return clone, (
        f"LayerNormalization {', '.join(names)} computed as (x - mean) * rsqrt(var + eps) * gamma + beta, "
        f"which has int8 kernels (Keras' lowering has a NEG, which does not); float outputs equal the "
        f"original's to {diff:.2g}"
    )
