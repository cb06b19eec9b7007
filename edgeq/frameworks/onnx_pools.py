"""ONNX AveragePool and LRN nodes as ops litert-torch lowers to TFLite builtins, in place of
onnx2torch's converters: its AvgPool2d with padding that excludes the padding from the count (ONNX's
default) and its LocalResponseNorm both become STABLEHLO_REDUCE_WINDOW, which TensorFlow's quantizer
refuses; and it refuses padding that differs at the two ends (GoogLeNet's last pool).

- AveragePool (2-D, ceil_mode 0): an explicit zero PAD, AVERAGE_POOL_2D with no padding, and where
  the padding is not counted, a MUL by the constant kernel-size / valid-count map of the output.
- LRN: x / (bias + alpha / size * S)^beta, S the sum of squares over `size` neighbouring channels,
  a 1x1 convolution of x * x by a banded 0/1 matrix (the ONNX window: floor((size - 1) / 2) before,
  ceil((size - 1) / 2) after); beta 0.75 and 0.5 as RSQRT and SQRT, which quantize, other betas POW.

Other cases go to onnx2torch's own converters. Registered once per process, in the converting child."""

from __future__ import annotations

import math
from typing import Any

REGISTERED: list[bool] = []


def register() -> None:
    if REGISTERED:
        return
    from onnx2torch.node_converters import registry

    for version in (7, 10, 11, 19):
        _replace(registry, "AveragePool", version, _average_pool)
    for version in (1, 13):
        _replace(registry, "LRN", version, _lrn)
    REGISTERED.append(True)


def _replace(registry: Any, kind: str, version: int, convert: Any) -> None:
    """`convert` for `kind` at `version`, falling back on onnx2torch's own where it returns None."""
    key = registry.OperationDescription(domain="", operation_type=kind, version=version)
    original = registry._CONVERTER_REGISTRY.pop(key, None)

    def converter(node: Any, graph: Any) -> Any:
        found = convert(node, graph)
        if found is None and original is not None:
            return original(node, graph)
        if found is None:
            raise NotImplementedError(f"{kind} version {version}")
        return found

    registry._CONVERTER_REGISTRY[key] = converter


def _result(module: Any, node: Any) -> Any:
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node=node))


def _input_shape(node: Any, graph: Any) -> list[int] | None:
    from onnx2torch.utils.common import get_shape_from_value_info

    info = graph.value_info.get(node.input_values[0])
    shape = get_shape_from_value_info(info) if info is not None else None
    return list(shape) if shape is not None and all(isinstance(d, int) and d > 0 for d in shape) else None


def _average_pool(node: Any, graph: Any) -> Any:
    attributes = node.attributes
    shape = _input_shape(node, graph)
    pads = list(attributes.get("pads", [0, 0, 0, 0]))
    if shape is None or len(shape) != 4 or attributes.get("ceil_mode", 0) or attributes.get("auto_pad", "NOTSET") != "NOTSET":
        return None
    if not any(pads):
        return None  # onnx2torch's AvgPool2d without padding lowers to AVERAGE_POOL_2D
    import torch

    kernel, strides = list(attributes["kernel_shape"]), list(attributes.get("strides", [1, 1]))
    torch_pads = [pads[1], pads[3], pads[0], pads[2]]  # left, right, top, bottom
    counted = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(torch.ones(1, 1, *shape[2:]), torch_pads), kernel, strides)
    scale = None if attributes.get("count_include_pad", 0) else 1.0 / counted
    return _result(_module_classes()["PaddedAveragePool"](kernel, strides, torch_pads, scale), node)


def _lrn(node: Any, graph: Any) -> Any:
    shape = _input_shape(node, graph)
    if shape is None or len(shape) != 4:
        return None
    import torch

    attributes, channels = node.attributes, shape[1]
    size = int(attributes["size"])
    before, after = (size - 1) // 2, math.ceil((size - 1) / 2)
    band = torch.zeros(channels, channels, 1, 1)
    for c in range(channels):
        band[c, max(0, c - before) : min(channels, c + after + 1)] = 1.0
    lrn = _module_classes()["BandedLRN"]
    return _result(
        lrn(
            band,
            float(attributes.get("alpha", 1e-4)) / size,
            float(attributes.get("beta", 0.75)),
            float(attributes.get("bias", 1.0)),
        ),
        node,
    )


def _module_classes() -> dict[str, Any]:
    import torch
    from onnx2torch.utils.common import OnnxToTorchModule

    class PaddedAveragePool(torch.nn.Module, OnnxToTorchModule):
        def __init__(self, kernel: list[int], strides: list[int], pads: list[int], scale: Any) -> None:
            super().__init__()
            self.kernel, self.strides, self.pads = kernel, strides, pads
            self.scale: Any
            self.register_buffer("scale", scale)

        def forward(self, x):
            y = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, self.pads), self.kernel, self.strides)
            return y * self.scale if self.scale is not None else y

    class BandedLRN(torch.nn.Module, OnnxToTorchModule):
        def __init__(self, band: Any, alpha: float, beta: float, bias: float) -> None:
            super().__init__()
            self.alpha, self.beta, self.bias = alpha, beta, bias
            self.band: Any
            self.register_buffer("band", band)

        def forward(self, x):
            d = self.bias + self.alpha * torch.nn.functional.conv2d(x * x, self.band)
            if self.beta == 0.75:
                return x * torch.rsqrt(d) * torch.rsqrt(torch.sqrt(d))
            if self.beta == 0.5:
                return x * torch.rsqrt(d)
            return x * torch.pow(d, -self.beta)

    return {"PaddedAveragePool": PaddedAveragePool, "BandedLRN": BandedLRN}
