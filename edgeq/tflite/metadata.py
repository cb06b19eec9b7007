"""TFLite Model Metadata: written into a model and read back, against the published schema
(tensorflow/tflite-support `metadata_schema.fbs`, the same file MediaPipe ships).

What Android Studio's ML Model Binding, MediaPipe Tasks and ML Kit read: the model's name,
description, version, author and license; per input, the image properties (color space, size) and
the normalization (mean/std in pixel units: input = (pixel - mean) / std) with the value range as
stats; per output, the labels as an associated file (TENSOR_AXIS_LABELS). The metadata is a
flatbuffer (identifier M001) in a model buffer named TFLITE_METADATA; associated files are a zip
appended to the model, which the interpreter ignores.

Written with the flatbuffers builder on the schema's field slots (the ones used here are listed in
the tables below), with no dependency beyond `flatbuffers`: MediaPipe's writer needs a C extension
its current wheels do not ship, and tflite-support has no wheels past Python 3.11.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
from flatbuffers import encode, packer
from flatbuffers import number_types as N
from flatbuffers.table import Table

from edgeq.core.errors import DataError, ModelError, UsageError
from edgeq.data.samples import Preprocessing
from edgeq.tflite.model import TfliteModel

METADATA_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # image properties, normalization, stats and tensor-level associated files are 1.0.0 features
COLOR = {"rgb": 1, "gray": 2}  # ColorSpaceType
IMAGE_PROPERTIES, NORMALIZATION, TENSOR_AXIS_LABELS = 2, 1, 2  # ContentProperties, ProcessUnitOptions, AssociatedFileType

# table -> field -> vtable slot, from metadata_schema.fbs
SLOTS = {
    "ModelMetadata": {
        "name": 0,
        "description": 1,
        "version": 2,
        "subgraph_metadata": 3,
        "author": 4,
        "license": 5,
        "min_parser_version": 7,
    },
    "SubGraphMetadata": {"name": 0, "input_tensor_metadata": 2, "output_tensor_metadata": 3},
    "TensorMetadata": {"name": 0, "description": 1, "content": 3, "process_units": 4, "stats": 5, "associated_files": 6},
    "Content": {"content_properties_type": 0, "content_properties": 1},
    "ImageProperties": {"color_space": 0, "default_size": 1},
    "ImageSize": {"width": 0, "height": 1},
    "ProcessUnit": {"options_type": 0, "options": 1},
    "NormalizationOptions": {"mean": 0, "std": 1},
    "Stats": {"max": 0, "min": 1},
    "AssociatedFile": {"name": 0, "description": 1, "type": 2},
}


@dataclass(frozen=True)
class ImageInput:
    name: str
    description: str = ""
    color: str | None = None  # rgb | gray
    width: int | None = None
    height: int | None = None
    mean: tuple[float, ...] = ()  # pixel units: input = (pixel - mean) / std
    std: tuple[float, ...] = ()
    min: tuple[float, ...] = ()  # the input's value range, after normalization
    max: tuple[float, ...] = ()


@dataclass(frozen=True)
class Output:
    name: str
    description: str = ""
    labels_file: str | None = None


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: tuple[ImageInput, ...] = ()
    outputs: tuple[Output, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)  # associated files by name (labels.txt)

    @property
    def labels(self) -> list[str] | None:
        """The first output's labels, one per line of its associated file."""
        name = next((o.labels_file for o in self.outputs if o.labels_file), None)
        if name is None or name not in self.files:
            return None
        return [line.strip() for line in self.files[name].decode("utf-8", "replace").splitlines() if line.strip()]


# -- writing ------------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    def table(self, kind: str, fields: dict) -> int:
        """A table whose fields are already-built offsets ("o"), strings ("s"), ints ("i8"/"u8"/"u32")."""
        values = {k: (t, v) for k, (t, v) in fields.items() if v is not None and v != ""}
        strings = {k: self.b.CreateString(v) for k, (t, v) in values.items() if t == "s"}
        self.b.StartObject(max(SLOTS[kind].values()) + 1)
        for key, (kind_, value) in values.items():
            slot = SLOTS[kind][key]
            if kind_ == "s":
                self.b.PrependUOffsetTRelativeSlot(slot, strings[key], 0)
            elif kind_ == "o":
                self.b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind_ == "i8":
                self.b.PrependInt8Slot(slot, value, 0)
            elif kind_ == "u8":
                self.b.PrependUint8Slot(slot, value, 0)
            else:
                self.b.PrependUint32Slot(slot, value, 0)
        return self.b.EndObject()

    def offsets(self, items: list[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def floats(self, values: tuple[float, ...]) -> int | None:
        if not values:
            return None
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def image_input(self, t: ImageInput) -> int:
        size = self.table("ImageSize", {"width": ("u32", t.width), "height": ("u32", t.height)}) if t.width else None
        props = self.table("ImageProperties", {"color_space": ("i8", COLOR.get(t.color or "")), "default_size": ("o", size)})
        content = self.table("Content", {"content_properties_type": ("u8", IMAGE_PROPERTIES), "content_properties": ("o", props)})
        units = None
        if t.mean:
            norm = self.table("NormalizationOptions", {"mean": ("o", self.floats(t.mean)), "std": ("o", self.floats(t.std))})
            units = self.offsets([self.table("ProcessUnit", {"options_type": ("u8", NORMALIZATION), "options": ("o", norm)})])
        stats = self.table("Stats", {"max": ("o", self.floats(t.max)), "min": ("o", self.floats(t.min))}) if t.max else None
        return self.table(
            "TensorMetadata",
            {
                "name": ("s", t.name),
                "description": ("s", t.description),
                "content": ("o", content),
                "process_units": ("o", units),
                "stats": ("o", stats),
            },
        )

    def output(self, t: Output) -> int:
        files = None
        if t.labels_file:
            files = self.offsets(
                [
                    self.table(
                        "AssociatedFile",
                        {
                            "name": ("s", t.labels_file),
                            "type": ("i8", TENSOR_AXIS_LABELS),
                            "description": ("s", "Labels for the categories the model can recognize."),
                        },
                    )
                ]
            )
        return self.table(
            "TensorMetadata", {"name": ("s", t.name), "description": ("s", t.description), "associated_files": ("o", files)}
        )

    def model(self, m: ModelMetadata) -> bytes:
        inputs = self.offsets([self.image_input(t) for t in m.inputs])
        outputs = self.offsets([self.output(t) for t in m.outputs])
        subgraph = self.table(
            "SubGraphMetadata", {"input_tensor_metadata": ("o", inputs), "output_tensor_metadata": ("o", outputs)}
        )
        root = self.table(
            "ModelMetadata",
            {
                "name": ("s", m.name),
                "description": ("s", m.description),
                "version": ("s", m.version),
                "subgraph_metadata": ("o", self.offsets([subgraph])),
                "author": ("s", m.author),
                "license": ("s", m.license),
                "min_parser_version": ("s", MIN_PARSER_VERSION),
            },
        )
        self.b.Finish(root, file_identifier=IDENTIFIER)
        return bytes(self.b.Output())


def with_metadata(model: bytes, metadata: ModelMetadata) -> bytes:
    """`model` with `metadata` in its TFLITE_METADATA buffer (replacing any) and the associated
    files zipped after it. Tensors, operators and signatures are untouched."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    buffer = schema.BufferT()
    buffer.data = list(_Writer().model(metadata))
    entries = [m for m in (root.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    root.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(root.buffers) - 1
    root.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(builder.Output()))
    if metadata.files:
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
            for name, data in metadata.files.items():
                archive.writestr(name, data)
    return out.getvalue()


# -- reading ------------------------------------------------------------------------------------


class _Table:
    """Read access to one table of the metadata flatbuffer, by the field names of SLOTS."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.t = Table(buf, pos)

    def _at(self, kind: str, key: str) -> int:
        return self.t.Offset(4 + 2 * SLOTS[kind][key])

    def string(self, kind: str, key: str) -> str:
        o = self._at(kind, key)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else ""

    def int(self, kind: str, key: str, flags) -> int:
        o = self._at(kind, key)
        return self.t.Get(flags, o + self.t.Pos) if o else 0

    def table(self, kind: str, key: str) -> _Table | None:
        o = self._at(kind, key)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, kind: str, key: str) -> list[_Table]:
        o = self._at(kind, key)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, kind: str, key: str) -> tuple[float, ...]:
        o = self._at(kind, key)
        if not o:
            return ()
        start = self.t.Vector(o)
        return tuple(round(self.t.Get(N.Float32Flags, start + 4 * i), 6) for i in range(self.t.VectorLen(o)))


def read_metadata(model: bytes) -> ModelMetadata | None:
    """The metadata of a model, or None when it has none; ModelError when it is malformed."""
    from ai_edge_litert import schema_py_generated as schema

    found = None
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") == METADATA_NAME:
                if not 0 <= entry.Buffer() < root.BuffersLength():
                    raise ModelError(
                        f"the model's {METADATA_NAME} entry refers to buffer {entry.Buffer()}, but the model has "
                        f"{root.BuffersLength()} buffers; re-export or re-download it"
                    )
                found = root.Buffers(entry.Buffer()).DataAsNumpy()
    except (struct.error, IndexError, ValueError, TypeError):  # offsets that point outside the file
        raise ModelError(
            "corrupt or truncated TFLite flatbuffer (its metadata list points outside the file); re-export or re-download it"
        ) from None
    if found is None or isinstance(found, int):
        return None
    data = bytes(found)
    if data[4:8] != IDENTIFIER:
        raise ModelError(f"the model's {METADATA_NAME} buffer is not TFLite Model Metadata (identifier {data[4:8]!r})")
    try:
        top = _Table(data, encode.Get(packer.uoffset, data, 0))
        subgraphs = top.tables("ModelMetadata", "subgraph_metadata")
        sub = subgraphs[0] if subgraphs else None
        inputs = tuple(_input(t) for t in (sub.tables("SubGraphMetadata", "input_tensor_metadata") if sub else []))
        outputs = tuple(_output(t) for t in (sub.tables("SubGraphMetadata", "output_tensor_metadata") if sub else []))
        meta = ModelMetadata(
            top.string("ModelMetadata", "name"),
            top.string("ModelMetadata", "description"),
            top.string("ModelMetadata", "version"),
            top.string("ModelMetadata", "author"),
            top.string("ModelMetadata", "license"),
            inputs,
            outputs,
            _associated_files(model),
        )
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"the model's metadata is malformed ({exc})") from None
    return meta


def _input(t: _Table) -> ImageInput:
    content = t.table("TensorMetadata", "content")
    props = (
        content.table("Content", "content_properties")
        if content and content.int("Content", "content_properties_type", N.Uint8Flags) == IMAGE_PROPERTIES
        else None
    )
    color = {v: k for k, v in COLOR.items()}.get(props.int("ImageProperties", "color_space", N.Int8Flags)) if props else None
    size = props.table("ImageProperties", "default_size") if props else None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    for unit in t.tables("TensorMetadata", "process_units"):
        if unit.int("ProcessUnit", "options_type", N.Uint8Flags) == NORMALIZATION:
            norm = unit.table("ProcessUnit", "options")
            mean, std = norm.floats("NormalizationOptions", "mean"), norm.floats("NormalizationOptions", "std")
    stats = t.table("TensorMetadata", "stats")
    return ImageInput(
        t.string("TensorMetadata", "name"),
        t.string("TensorMetadata", "description"),
        color,
        size.int("ImageSize", "width", N.Uint32Flags) if size else None,
        size.int("ImageSize", "height", N.Uint32Flags) if size else None,
        mean,
        std,
        stats.floats("Stats", "min") if stats else (),
        stats.floats("Stats", "max") if stats else (),
    )


def _output(t: _Table) -> Output:
    labels = next(
        (
            f.string("AssociatedFile", "name")
            for f in t.tables("TensorMetadata", "associated_files")
            if f.int("AssociatedFile", "type", N.Int8Flags) == TENSOR_AXIS_LABELS
        ),
        None,
    )
    return Output(t.string("TensorMetadata", "name"), t.string("TensorMetadata", "description"), labels)


def _associated_files(model: bytes) -> dict[str, bytes]:
    """Files zipped onto the end of the model (labels), as MediaPipe's writer appends them; a
    member that does not read back, or claims more than 64 MiB, is left out."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist() if info.file_size <= 1 << 26}
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        zlib.error,
    ):
        return {}


# -- from a conversion ----------------------------------------------------------------------------

KINDS = ("image-classifier", "generic")


@dataclass(frozen=True)
class Description:
    """What the user says about a model for its metadata (`edgeq convert --labels ... --name ...`)."""

    kind: str = "image-classifier"
    labels: tuple[str, ...] = ()
    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        if self.kind == "object-detector":
            raise UsageError(
                "--metadata object-detector: not written by edgeq yet (MediaPipe's detector needs the metadata of "
                "the SSD post-processing outputs: locations, categories, scores, count); use image-classifier or generic"
            )
        if self.kind not in KINDS:
            raise UsageError(f"--metadata {self.kind!r}: use {' or '.join(KINDS)}")


def read_labels(path: str | Path) -> tuple[str, ...]:
    """One label per line (blank lines skipped), as Android's and MediaPipe's label files are."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the labels ({exc}); pass a UTF-8 text file with one label per line") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise DataError(f"{path}: no labels in it; one label per line")
    return labels


def metadata_for(model: TfliteModel, preprocessing: Preprocessing, about: Description) -> ModelMetadata:
    """The metadata of a converted model: its inputs as images scaled the way it was calibrated,
    its first output labelled. The labels must match that output's class count."""
    inputs = [model.tensors[i] for i in model.inputs]
    outputs = [model.tensors[i] for i in model.outputs]
    keys = {i: k for s in model.signatures[:1] for k, i in s.inputs + s.outputs}
    if about.labels:
        classes = outputs[0].shape[-1] if outputs[0].shape else 0
        if len(about.labels) != classes:
            raise UsageError(
                f"--labels has {len(about.labels)} labels but the model's output '{keys.get(model.outputs[0], outputs[0].name)}' "
                f"has {classes} classes; give one label per class, in the output's order"
            )
    described = []
    for index, tensor in zip(model.inputs, inputs):
        name = keys.get(index, tensor.name)
        image = about.kind == "image-classifier" and len(tensor.shape) == 4 and tensor.shape[-1] in (1, 3)
        if not image:
            described.append(ImageInput(name) if about.kind == "generic" else _not_an_image(name, tensor.shape))
            continue
        scaling = preprocessing.per_channel(tensor.shape[-1])
        mean, std, low, high = scaling.mean, scaling.std, scaling.low, scaling.high
        described.append(
            ImageInput(
                name,
                "Input image to be classified.",
                preprocessing.color or ("rgb" if tensor.shape[-1] == 3 else "gray"),
                tensor.shape[2],
                tensor.shape[1],
                mean,
                std,
                low,
                high,
            )
        )
    files = {"labels.txt": ("\n".join(about.labels) + "\n").encode()} if about.labels else {}
    outs = [
        Output(
            keys.get(i, t.name),
            "Probabilities of the labels respectively." if n == 0 and about.labels else "",
            "labels.txt" if n == 0 and about.labels else None,
        )
        for n, (i, t) in enumerate(zip(model.outputs, outputs))
    ]
    return ModelMetadata(
        about.name or "edgeq model",
        about.description,
        about.version,
        about.author,
        about.license,
        tuple(described),
        tuple(outs),
        files,
    )


def stated_normalization(metadata: ModelMetadata | None) -> Preprocessing | None:
    """The input normalization a model's own metadata states ((pixel - mean) / std), if any."""
    stated = next((i for i in (metadata.inputs if metadata else ()) if i.mean and i.std), None)
    if stated is None or any(s == 0 for s in stated.std):
        return None
    return Preprocessing(mean=tuple(float(m) for m in stated.mean), std=tuple(float(s) for s in stated.std))


def _not_an_image(name: str, shape: tuple[int, ...]) -> ImageInput:
    raise UsageError(
        f"--metadata image-classifier: input '{name}' has shape {list(shape)}, not an image [1, H, W, 1|3]; "
        "use --metadata generic"
    )
