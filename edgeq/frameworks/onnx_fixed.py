"""onnx2torch's ops that read a shape, bounds, pads, axes or an index from a tensor at run time
(Reshape, Slice, Pad, Squeeze, Unsqueeze, a Gather of one index), which torch.export or litert-torch
refuses ("Could not guard on data-dependent expression", ".numpy() is not supported for tensor
subclasses"). Where that tensor is a weight of the module, the op is replaced by one that holds the
numbers: the same result. Imported only where ONNX is converted (it imports torch and onnx2torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from onnx2torch.node_converters.gather import OnnxGather
from onnx2torch.node_converters.pad import OnnxPadDynamic, _onnx_padding_to_torch
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.node_converters.slice import OnnxSlice, _get_slices
from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes


class FixedReshape(torch.nn.Module):
    def __init__(self, operands: list[Any]) -> None:
        super().__init__()
        self.shape = [int(d) for d in operands[0].tolist()]

    def forward(self, x):
        return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])  # ONNX: 0 keeps the dim


class FixedSlice(torch.nn.Module):
    def __init__(self, operands: list[Any]) -> None:
        super().__init__()
        self.slices = _get_slices(*[b.tolist() if b is not None else None for b in operands[:2]], *operands[2:])

    def forward(self, x):
        flip, positive, negative = self.slices  # indexed by tuples: a list of slices is a tensor index to torch >= 2.9
        x = torch.flip(x, dims=flip) if flip else x
        x = x[tuple(positive)] if positive else x
        return x[tuple(negative)] if negative else x


class FixedPad(torch.nn.Module):
    """ONNX Pad with constant pads; leading dimensions without padding are left out of torch's pad
    list, so reflect and edge padding reach inputs of any rank (onnx2torch refuses a [1, N] one)."""

    def __init__(self, mode: str, operands: list[Any]) -> None:
        super().__init__()
        self.mode, self.pads = mode, _onnx_padding_to_torch([int(v) for v in operands[0].tolist()])
        self.value = float(operands[1]) if len(operands) > 1 and operands[1] is not None else 0.0
        while len(self.pads) > 2 and self.pads[-2:] == [0, 0]:
            self.pads = self.pads[:-2]

    def forward(self, x):
        if self.mode == "constant":
            return torch.nn.functional.pad(x, self.pads, value=self.value)
        return torch.nn.functional.pad(x, self.pads, mode=self.mode)


class FixedSqueeze(torch.nn.Module):
    def __init__(self, operands: list[Any]) -> None:
        super().__init__()
        self.axes = sorted((int(a) for a in operands[0].tolist()), reverse=True) if operands and operands[0] is not None else []

    def forward(self, x):
        if not self.axes:
            return torch.squeeze(x)
        for axis in self.axes:
            x = torch.squeeze(x, dim=axis)
        return x


class FixedUnsqueeze(torch.nn.Module):
    def __init__(self, operands: list[Any]) -> None:
        super().__init__()
        self.axes = sorted(int(a) for a in operands[0].tolist())

    def forward(self, x):
        for axis in self.axes:
            x = torch.unsqueeze(x, dim=axis)
        return x


class FixedGather(torch.nn.Module):
    """ONNX Gather of constant indices; one index (a 0-d tensor) selects, which litert-torch's
    lowering of indexing by a 0-d tensor (.item() on a traced value) cannot."""

    def __init__(self, axis: int, operands: list[Any]) -> None:
        super().__init__()
        self.axis, self.index = axis, int(operands[0]) if operands[0].dim() == 0 else None
        self.indices: torch.Tensor
        self.register_buffer("indices", operands[0].to(torch.int64))

    def forward(self, x):
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if self.index is not None:
            return torch.select(x, axis, self.index)
        flat = torch.index_select(x, axis, torch.remainder(self.indices.flatten(), x.shape[axis]))
        return flat.reshape(*x.shape[:axis], *self.indices.shape, *x.shape[axis + 1 :])


FIXED: dict[type, Callable[[Any, list[Any]], torch.nn.Module]] = {
    OnnxReshape: lambda op, operands: FixedReshape(operands),
    OnnxSlice: lambda op, operands: FixedSlice(operands),
    OnnxPadDynamic: lambda op, operands: FixedPad(op.mode, operands),
    OnnxSqueezeDynamicAxes: lambda op, operands: FixedSqueeze(operands),
    OnnxUnsqueezeDynamicAxes: lambda op, operands: FixedUnsqueeze(operands),
    OnnxGather: lambda op, operands: FixedGather(op._axis, operands),
}


def fixed_operands(module):
    """`module` (onnx2torch's GraphModule) with each op of FIXED whose operands after the first are
    all weights (or absent) replaced by its fixed form."""

    def weight(arg):
        if arg is None:
            return None
        value = module
        for part in arg.target.split("."):
            value = getattr(value, part)
        return value

    changed = False
    for node in module.graph.nodes:
        if node.op != "call_module" or len(node.args) < 2:
            continue
        op = module.get_submodule(node.target)
        build = FIXED.get(type(op))
        if build is None or not all(arg is None or getattr(arg, "op", None) == "get_attr" for arg in node.args[1:]):
            continue
        parent, _, name = node.target.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, name, build(op, [weight(arg) for arg in node.args[1:]]))
        node.args = (node.args[0],)
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.recompile()
    return module
