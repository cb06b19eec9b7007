"""ONNX LSTM and GRU nodes for onnx2torch, which has no converter for them: each becomes a module
that runs the ONNX equations step by step, unrolled over the fixed sequence length (so
torch.export and litert-torch see matrix products and element-wise ops that quantize to int8).

The ONNX operator definitions: gates i, o, f, c for LSTM and z, r, h for GRU; W [D, G*H, I],
R [D, G*H, H], B [D, 2*G*H] (the W biases then the R biases); directions forward, reverse or
bidirectional; layout 0 ([T, B, I] in, Y [T, D, B, H] out) or 1 ([B, T, I], Y [B, T, D, H]).
Refused by name: other activations, clip, input_forget, peepholes, and sequence_lens, which a
fixed-length graph cannot honour.
"""

from __future__ import annotations

from typing import Any

from edgeq.core.errors import ModelError

REGISTERED: list[bool] = []


def register() -> None:
    """Add the converters to onnx2torch's registry, once per process."""
    if REGISTERED:
        return
    from onnx2torch.node_converters.registry import add_converter

    recurrent = _module_class()
    for kind in ("LSTM", "GRU"):
        for version in (7, 14):
            add_converter(operation_type=kind, version=version)(_converter(kind, recurrent))
    REGISTERED.append(True)


def _module_class() -> Any:
    """The torch module of one ONNX LSTM or GRU node (torch imported here, in the converting child)."""
    import torch
    from onnx2torch.utils.common import OnnxToTorchModule

    class Recurrent(torch.nn.Module, OnnxToTorchModule):
        """One ONNX LSTM or GRU node, unrolled."""

        def __init__(self, kind: str, w, r, b, hidden: int, direction: str, layout: int, outputs: int, linear_before_reset: int):
            super().__init__()
            self.kind, self.hidden, self.layout, self.outputs = kind, hidden, layout, outputs
            self.reverse = [direction == "reverse"] if direction != "bidirectional" else [False, True]
            self.linear_before_reset = bool(linear_before_reset)
            gates = w.shape[1]
            bias = b if b is not None else torch.zeros(w.shape[0], 2 * gates)

            def each(tensors) -> Any:  # one weight per direction, transposed once: each step reads the same constant
                return torch.nn.ParameterList([torch.nn.Parameter(t.contiguous(), requires_grad=False) for t in tensors])

            self.w, self.r = each(w.transpose(1, 2)), each(r.transpose(1, 2))  # [I, G*H], [H, G*H]
            self.wb, self.rb = each(bias[:, :gates]), each(bias[:, gates:])

        def forward(self, x, initial_h=None, initial_c=None):
            if self.layout == 1:
                x = x.transpose(0, 1)
            steps, batch = x.shape[0], x.shape[1]
            ys, hs, cs = [], [], []
            for d, reverse in enumerate(self.reverse):
                h = initial_h[d] if initial_h is not None else x.new_zeros(batch, self.hidden)
                c = initial_c[d] if initial_c is not None else x.new_zeros(batch, self.hidden)
                xw = torch.matmul(x, self.w[d]) + self.wb[d]
                out: list[Any] = [None] * steps
                for t in reversed(range(steps)) if reverse else range(steps):
                    if self.kind == "LSTM":
                        i, o, f, g = (xw[t] + torch.matmul(h, self.r[d]) + self.rb[d]).split(self.hidden, -1)
                        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                        h = torch.sigmoid(o) * torch.tanh(c)
                    else:
                        h = self._gru_step(xw[t], h, d)
                    out[t] = h
                ys.append(torch.stack(out, 0))
                hs.append(h)
                cs.append(c)
            y, y_h, y_c = torch.stack(ys, 1), torch.stack(hs, 0), torch.stack(cs, 0)  # [T, D, B, H], [D, B, H]
            if self.layout == 1:
                y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
            found = (y, y_h, y_c)[: self.outputs]
            return found[0] if self.outputs == 1 else found

        def _gru_step(self, xw, h, d: int):
            z_x, r_x, h_x = xw.split(self.hidden, -1)
            z_b, r_b, h_b = self.rb[d].split(self.hidden, -1)
            z_h, r_h = torch.matmul(h, self.r[d][:, : 2 * self.hidden]).split(self.hidden, -1)
            z, r = torch.sigmoid(z_x + z_h + z_b), torch.sigmoid(r_x + r_h + r_b)
            recurrent = self.r[d][:, 2 * self.hidden :]
            if self.linear_before_reset:
                candidate = torch.tanh(h_x + r * (torch.matmul(h, recurrent) + h_b))
            else:
                candidate = torch.tanh(h_x + torch.matmul(r * h, recurrent) + h_b)
            return (1 - z) * candidate + z * h

    return Recurrent


def _converter(kind: str, recurrent: Any) -> Any:
    """onnx2torch's converter of an ONNX `kind` node into `recurrent` (edgeq's module)."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    defaults = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh")}[kind]

    def convert(node, graph) -> Any:
        attributes = node.attributes
        name = f"{kind} node {node.name!r}"
        activations = tuple(a.decode() if isinstance(a, bytes) else a for a in attributes.get("activations", defaults))
        direction = attributes.get("direction", "forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        for what, refused in (
            ("activations other than the defaults", activations not in (defaults, defaults * 2)),
            ("clip", attributes.get("clip") is not None),
            ("input_forget", bool(attributes.get("input_forget", 0))),
        ):
            if refused:
                raise ModelError(f"{name} uses {what}, which edgeq's {kind} converter does not take")
        inputs = list(node.input_values) + [""] * 8
        weights = {}
        for position, role in ((1, "W"), (2, "R"), (3, "B")):
            value = inputs[position]
            if value and value not in graph.initializers:
                raise ModelError(f"{name}: its {role} is computed, not a weight; edgeq's converter takes weights only")
            weights[role] = graph.initializers[value].to_torch() if value else None
        if inputs[4]:
            raise ModelError(f"{name} takes sequence_lens, which a graph of fixed length cannot honour; export it without them")
        if kind == "LSTM" and inputs[7]:
            raise ModelError(f"{name} has peepholes (P), which edgeq's LSTM converter does not take")
        if weights["W"] is None or weights["R"] is None:
            raise ModelError(f"{name} has no W or R weights")
        hidden = int(attributes.get("hidden_size", weights["R"].shape[-1]))
        module = recurrent(
            kind,
            weights["W"],
            weights["R"],
            weights["B"],
            hidden,
            direction,
            int(attributes.get("layout", 0)),
            len(node.output_values),
            int(attributes.get("linear_before_reset", 0)),
        )
        states = [inputs[5]] + ([inputs[6]] if kind == "LSTM" else [])
        mapped = (inputs[0], *states) if any(states) else (inputs[0],)
        if any(states) and not all(states):
            raise ModelError(f"{name} has only some of its initial states; give both or neither")
        mapping = OnnxMapping(inputs=mapped, outputs=node.output_values)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    return convert
