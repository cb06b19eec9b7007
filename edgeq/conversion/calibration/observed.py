"""Calibration at inference speed: TensorFlow's calibrator's ranges, from the float graph run on
XNNPACK with every tensor the calibrator logs made an output of the graph.

TensorFlow's calibrator runs every op on the built-in kernels with a logger around it: about 8x
the time of the same invokes on XNNPACK (MobileNetV2 at 224: 15.9 s against 1.0 s for 200
samples). Min and max do not depend on the kernel beyond float rounding, so edgeq runs a copy of
the calibrated graph whose outputs include every logged tensor, and keeps each one's min and max
(NaN skipped, as the calibrator's logger does).

One quirk of the calibrator is kept on purpose, since the plain converter's scales come from it:
it logs each op's inputs again after the op ran (to catch LSTM state), and an op that ran in place
(ADD writing its output over its input's buffer) leaves the output's values there. So an input that
shares its buffer with an output of its op gets that output's range too. Which buffers are shared
is read from an interpreter on the built-in kernels, as the calibrator plans them.

Graphs whose logged values this cannot see (several subgraphs, state variables, op intermediates as
LSTM has) return None: the caller calibrates them with TensorFlow's own calibrator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from edgeq.conversion.calibration.parallel import Ranges, range_slots, write_ranges

# TensorFlow's logger starts each max at std::numeric_limits<float>::min(), the smallest positive
# float, so an all-negative tensor's max is recorded as 1.2e-38, not its own max (MediaPipe's face
# detector: classificator_8's range is [-7.06, 1.2e-38]); kept, as the quantizer's input
SMALLEST_MAX = float(np.finfo(np.float32).tiny)
STATEFUL_OPS = frozenset(
    {
        "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "RNN",
        "SVDF",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "ASSIGN_VARIABLE",
        "CALL_ONCE",
        "WHILE",
        "IF",
        "CUSTOM",
    }
)


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def observable(calibrated: bytes) -> bool:
    """Whether every tensor the calibrator logs is a graph input or an op output that XNNPACK's run
    shows with the calibrator's values."""
    from edgeq.tflite.model import parse_tflite

    root = _schema().Model.GetRootAsModel(calibrated, 0)
    if root.SubgraphsLength() != 1:
        return False
    graph = root.Subgraphs(0)
    if any(graph.Tensors(i).IsVariable() for i in range(graph.TensorsLength())):
        return False
    if any(graph.Operators(i).IntermediatesLength() for i in range(graph.OperatorsLength())):
        return False
    model = parse_tflite(calibrated)
    if any(op.type in STATEFUL_OPS for op in model.operators):
        return False
    seen = set(model.inputs) | {o for op in model.operators for o in op.outputs}
    return set(range_slots(calibrated)) <= seen


def observer_graph(calibrated: bytes, logged: list[int]) -> bytes:
    """The calibrated graph with every logged tensor among its outputs (the original ones first)."""
    import flatbuffers

    schema = _schema()
    root = schema.ModelT.InitFromPackedBuf(bytearray(calibrated), 0)
    graph = root.subgraphs[0]
    outputs = [int(i) for i in graph.outputs]
    graph.outputs = outputs + [i for i in logged if i not in set(outputs)]
    builder = flatbuffers.Builder(len(calibrated) + (1 << 16))
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def in_place(calibrated: bytes, shapes: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """(input, output) pairs of one op whose buffers the built-in kernels share: the op writes its
    output over its input, so the calibrator's second log of that input sees the output's values."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeq.tflite.model import parse_tflite

    interpreter = allocated(
        Interpreter(model_content=calibrated, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
        shapes,
    )
    model = parse_tflite(calibrated)
    logged = set(range_slots(calibrated))

    def address(index: int) -> int | None:
        try:
            view = interpreter.tensor(index)()
        except ValueError:  # no buffer planned for it (the interpreter says "Tensor data is null")
            return None
        found = view.__array_interface__["data"][0] if view.nbytes else None
        del view  # the interpreter refuses to run while a view of its memory is held
        return found

    pairs = []
    for op in model.operators:
        outputs = {address(o): o for o in op.outputs if o in logged}
        outputs.pop(None, None)
        pairs += [(i, outputs[address(i)]) for i in op.inputs if i in logged and address(i) in outputs]
    return [(i, o) for i, o in pairs if i != o]


def observe(
    calibrated: bytes, samples: Iterable[list[np.ndarray]], tensors: Iterable[int], threads: int
) -> Iterator[Callable[[Callable[[int, np.ndarray], None]], None]]:
    """Per sample (arrays in the graph's input order), after the graph ran on it on XNNPACK: a
    function that hands each of `tensors` (graph inputs or op outputs) and its float values to a
    visitor. The values are views into the interpreter, valid only inside the visit."""
    from ai_edge_litert.interpreter import Interpreter

    wanted = sorted(tensors)
    samples = iter(samples)
    first = next(samples, None)
    if first is None:
        return
    interpreter = allocated(
        Interpreter(model_content=observer_graph(calibrated, wanted), num_threads=threads), [np.shape(a) for a in first]
    )
    inputs = [detail["index"] for detail in interpreter.get_input_details()]
    graph_inputs = {index: position for position, index in enumerate(inputs)}
    for sample in _chain(first, samples):
        for index, array in zip(inputs, sample):
            interpreter.set_tensor(index, np.asarray(array, np.float32))
        interpreter.invoke()

        def visit(visitor: Callable[[int, np.ndarray], None], sample=sample) -> None:
            for index in wanted:
                if index in graph_inputs:
                    visitor(index, np.asarray(sample[graph_inputs[index]], np.float32))
                    continue
                values = interpreter.tensor(index)()
                visitor(index, values)
                del values  # the interpreter refuses to run while a view of its memory is held

        yield visit


def observed_ranges(calibrated: bytes, samples: Iterable[list[np.ndarray]], threads: int) -> Ranges:
    """The min and max of every logged tensor over `samples` (arrays in the graph's input order),
    with the in-place quirk of TensorFlow's calibrator applied."""
    logged = sorted(range_slots(calibrated))
    low = {i: np.inf for i in logged}
    high = {i: SMALLEST_MAX for i in logged}
    shapes: list[tuple[int, ...]] = []

    def log(index: int, values: np.ndarray) -> None:
        a, b = values.min(), values.max()
        if np.isnan(a) or np.isnan(b):  # the calibrator's logger skips NaN
            if np.isnan(values).all():
                return
            a, b = np.nanmin(values), np.nanmax(values)
        low[index], high[index] = min(low[index], float(a)), max(high[index], float(b))

    def shaped(samples):
        for sample in samples:
            shapes[:] = shapes or [np.shape(a) for a in sample]
            yield sample

    for visit in observe(calibrated, shaped(samples), logged, threads):
        visit(log)
    true = {i: (low[i], high[i]) for i in logged}
    ranges = dict(true)
    for source, target in in_place(calibrated, shapes):
        ranges[source] = (min(ranges[source][0], true[target][0]), max(ranges[source][1], true[target][1]))
    return ranges


def allocated(interpreter, shapes: list[tuple[int, ...]]):
    """The interpreter allocated for inputs of `shapes` (as the calibrator prepares it)."""
    for detail, shape in zip(interpreter.get_input_details(), shapes):
        if tuple(detail["shape"]) != tuple(shape):
            interpreter.resize_tensor_input(detail["index"], list(shape))
    interpreter.allocate_tensors()
    return interpreter


def _chain(first, rest):
    yield first
    yield from rest


def calibrated_on_xnnpack(calibrated_once: bytes, samples: Iterable[list[np.ndarray]], threads: int) -> bytes:
    """`calibrated_once` (the converter's calibrated graph on any sample) with the ranges
    TensorFlow's calibrator records over all `samples`, within float rounding."""
    return write_ranges(calibrated_once, observed_ranges(calibrated_once, samples, threads))
