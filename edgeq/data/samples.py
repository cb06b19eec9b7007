"""Streams of real samples for calibration and evaluation: image folders, .npy and .npz arrays.

A source knows how many samples it will give and yields them one at a time, each as a list of
float32 arrays with a batch dimension of 1 (one per model input), so memory does not grow with
the sample count. Problems the user can fix raise DataError naming the file.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.core.errors import DataError, UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}
PREFETCH = 8


@dataclass(frozen=True)
class InputSpec:
    """One model input as the converter sees it: a fixed shape with batch 1."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


COLORS = ("rgb", "gray")
RESIZES = ("stretch", "crop", "pad")
LAYOUTS = ("nhwc", "nchw")


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model inputs: real = (pixel/255 * (hi - lo) + lo), or (pixel - mean) / std."""

    color: str | None = None  # "rgb" | "gray"; None: from the model's channel count
    resize: str = "stretch"  # "stretch" | "crop" | "pad"
    value_range: str | None = None  # None: "0,1" for images, no expectation for arrays
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None  # "nhwc" | "nchw"; None: from the input's shape

    def __post_init__(self) -> None:
        if self.layout not in (None, *LAYOUTS):
            raise UsageError(f"--layout {self.layout!r}: use nhwc or nchw")
        if self.color not in (None, *COLORS):
            raise UsageError(f"--color {self.color!r}: use rgb or gray")
        if self.resize not in RESIZES:
            raise UsageError(f"--resize {self.resize!r}: use stretch, crop or pad")
        if self.value_range is not None and self.value_range not in RANGES:
            raise UsageError(f"--range {self.value_range!r}: use one of {', '.join(RANGES)}")
        if (self.mean is None) != (self.std is None):
            raise UsageError("--mean and --std go together; pass both")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UsageError("--std must not contain 0")

    def expected_range(self) -> tuple[float, float] | None:
        """The value range the user said inputs have, if they said one."""
        if self.mean is None and self.value_range is None:
            return None
        n = self.per_channel(max(len(self.mean or ()), len(self.std or ()), 1))
        return min(n.low), max(n.high)

    def per_channel(self, channels: int) -> PixelScaling:
        """mean/std in pixel units (input = (pixel - mean) / std) and the input's range, per channel:
        the one place a range and a mean/std are turned into each other."""
        if self.mean is not None and self.std is not None:
            mean = self.mean * channels if len(self.mean) == 1 else self.mean
            std = self.std * channels if len(self.std) == 1 else self.std
        else:
            low, high = RANGES[self.value_range or "0,1"]
            scale = 255.0 / (high - low)
            mean, std = (-low * scale + 0.0,) * channels, (scale,) * channels  # + 0.0: no -0.0
        return PixelScaling(
            tuple(float(m) for m in mean),
            tuple(float(s) for s in std),
            tuple(round((0 - m) / s, 6) for m, s in zip(mean, std)),
            tuple(round((255 - m) / s, 6) for m, s in zip(mean, std)),
        )

    def merged(self, overrides: PreprocessingOverride) -> tuple[Preprocessing, dict[str, str]]:
        """These settings (e.g. the manifest's) with the given fields replaced, field by field, and
        where each field came from ("given" or "base"). A range replaces a mean/std and back, as
        they are alternative ways to scale."""
        values = {f: getattr(self, f) for f in FIELDS}
        given = {f: getattr(overrides, f) for f in FIELDS if getattr(overrides, f) is not None}
        if "value_range" in given:
            values.update(mean=None, std=None)
        if "mean" in given or "std" in given:
            values["value_range"] = None
        values.update(given)
        return Preprocessing(**values), {k: "given" if k in given else "base" for k in values}

    def describe(self) -> str:
        scale = (
            f"mean {_list(self.mean)} std {_list(self.std)}" if self.mean is not None else f"range {self.value_range or '0,1'}"
        )
        layout = f", layout {self.layout}" if self.layout else ""
        return f"color {self.color or 'from the model'}, resize {self.resize}, {scale}{layout}"

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        pixels = pixels.astype(np.float32)
        if self.mean is not None and self.std is not None:
            channels = pixels.shape[-1]
            mean = np.resize(np.asarray(self.mean, np.float32), channels)
            std = np.resize(np.asarray(self.std, np.float32), channels)
            return (pixels - mean) / std
        lo, hi = RANGES[self.value_range or "0,1"]
        return pixels * np.float32((hi - lo) / 255.0) + np.float32(lo)


FIELDS = ("color", "resize", "value_range", "mean", "std", "layout")


@dataclass(frozen=True)
class PixelScaling:
    """Per channel: input = (pixel - mean) / std, so pixels 0..255 become low..high."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class PreprocessingOverride:
    """The preprocessing flags given to validate: each one given replaces the manifest's."""

    color: str | None = None
    resize: str | None = None
    value_range: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None


def image_layout(shape: tuple[int, ...], asked: str | None = None) -> str | None:
    """ "nhwc" or "nchw" for a [1, ., ., .] image input, else None. NCHW when only the second axis
    holds a channel count (1, 3 or 4): [1, 3, 48, 48] from PyTorch; `asked` settles the rest."""
    if len(shape) != 4:
        return None
    if asked is not None:
        return asked
    channels = (1, 3, 4)
    if shape[-1] in channels:
        return "nhwc"
    return "nchw" if shape[1] in channels else None


def _list(values: tuple[float, ...] | None) -> str:
    return ",".join(f"{v:g}" for v in values or ())


class SampleSource:
    """Base of the sources: `len()` samples, `iter()` yields [array per input] with batch 1."""

    specs: list[InputSpec]
    labels: list[int] | None = None
    class_names: list[str] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        raise NotImplementedError

    def in_data_order(self) -> list[list[np.ndarray]]:
        """The samples in the order the data holds them, not the seeded shuffle: a sequence's steps."""
        rows = list(self)
        return [rows[p] for p in np.argsort(getattr(self, "indices", np.arange(len(rows))))]

    def describe(self) -> str:
        raise NotImplementedError

    def where(self, position: int) -> str:
        """The file (or array row) the `position`-th sample yielded came from."""
        raise NotImplementedError


def fed_as_arrays(path: str | Path | None) -> bool:
    """Samples in a .npy/.npz are fed as given: no resize, range or mean/std applies to them."""
    return path is not None and Path(path).suffix in (".npy", ".npz")


def open_samples(
    path: str | Path,
    specs: list[InputSpec],
    preprocessing: Preprocessing | None = None,
    limit: int | None = None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> SampleSource:
    """Open a folder of images, a .npy or a .npz; pick `limit` samples in a seeded shuffle.
    `class_names`: the model's labels in output order; an image folder's class folders are
    looked up in them (default: the folders in sorted order are classes 0, 1, ...)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; pass an image folder, a .npy or a .npz")
    if limit is not None and limit < 1:
        raise UsageError(f"the sample count must be at least 1, got {limit}")
    preprocessing = preprocessing or Preprocessing()
    if path.is_dir():
        return ImageFolder(path, specs, preprocessing, limit, seed, class_names)
    if path.suffix == ".npy":
        return ArraySource(path, specs, {specs[0].name: _load_npy(path)} if len(specs) == 1 else None, limit, seed)
    if path.suffix == ".npz":
        arrays = _load_npz(path, specs)
        starts = arrays.pop("__starts__", None)
        source = ArraySource(path, specs, arrays, limit, seed, arrays.pop("__labels__", None))
        source.starts = set(np.flatnonzero(np.asarray(starts).ravel()).tolist()) if starts is not None else set()
        return source
    raise DataError(f"{path}: unsupported data file; use an image folder, a .npy or a .npz")


def _class_index(root: Path, classes: list[str], labels: list[str] | None) -> dict[str, int]:
    """Class folder -> output index: by the model's labels when it has them (a folder may also be
    the index itself, 0..N-1), else the folders in sorted order."""
    if not labels:
        return {c: i for i, c in enumerate(classes)}
    by_label = {c: labels.index(c) for c in classes if c in labels}
    if len(by_label) == len(classes):
        return by_label
    if all(c.isdigit() and int(c) < len(labels) for c in classes):
        return {c: int(c) for c in classes}
    unknown = [c for c in classes if c not in labels]
    raise DataError(
        f"{root}: class folder(s) {', '.join(unknown[:5])} are not among the model's labels "
        f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''}); name the folders by label or by class index"
    )


def _pick(total: int, limit: int | None, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(total)
    return order[: limit or total]


class ImageFolder(SampleSource):
    """Images found recursively; the first folder level below the root names the class."""

    def __init__(
        self,
        root: Path,
        specs: list[InputSpec],
        pre: Preprocessing,
        limit: int | None,
        seed: int,
        class_names: list[str] | None = None,
    ):
        self.layout = image_layout(specs[0].shape, pre.layout) if len(specs) == 1 else None
        if self.layout is None:
            shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
            raise DataError(
                f"{root}: an image folder feeds one image input [1, H, W, C] or [1, C, H, W] (C 1, 3 or 4), "
                f"but the model takes {shapes}; pass a .npy/.npz"
            )
        shape = specs[0].shape
        self.height, self.width, self.channels = (
            (shape[1], shape[2], shape[3]) if self.layout == "nhwc" else (shape[2], shape[3], shape[1])
        )
        if self.channels not in (1, 3, 4):
            raise DataError(
                f"the model's input '{specs[0].name}' {list(shape)} has {self.channels} channels as {self.layout.upper()}; "
                "image folders give 1 (gray), 3 (rgb) or 4 (rgba); pass --layout, or a .npy"
            )
        for name, values in (("--mean", pre.mean), ("--std", pre.std)):
            if values is not None and len(values) not in (1, self.channels):
                raise UsageError(
                    f"{name} has {len(values)} values but the model's input has {self.channels} channel(s); "
                    f"give {self.channels} (one per channel) or 1 (for all)"
                )
        wanted = {"rgb": 3, "gray": 1}.get(pre.color or "", self.channels)
        if wanted != self.channels:
            raise UsageError(
                f"--color {pre.color} gives {wanted} channel(s) but the model's input '{specs[0].name}' has {self.channels}"
            )
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} recursively)")
        self.root, self.specs, self.pre = root, specs, pre
        self.files = [files[i] for i in _pick(len(files), limit, seed)]
        classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
        if classes and all(len(p.relative_to(root).parts) > 1 for p in files):
            index = _class_index(root, classes, class_names)
            self.class_names = list(class_names) if class_names else classes
            self.labels = [index[p.relative_to(root).parts[0]] for p in self.files]
        self.available = len(files)

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        layout = ", fed as NCHW" if self.layout == "nchw" else ""
        return f"{len(self.files)} of {self.available} images in {self.root}{layout}"

    def where(self, position: int) -> str:
        return str(self.files[position])

    def check_headers(self) -> None:
        """Open every chosen file's header (cheap, no pixel decode) so a non-image fails early."""
        from PIL import Image

        for path in self.files:
            try:
                with Image.open(path) as img:
                    _check_mode(path, img.mode)
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{path}: cannot be decoded as an image ({exc}); remove or replace it") from exc

    def load(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as opened:
                _check_mode(path, opened.mode)
                img = opened.convert({3: "RGB", 4: "RGBA"}.get(self.channels, "L"))
                img = _resize(img, self.width, self.height, self.pre.resize)
                pixels = np.asarray(img, dtype=np.uint8)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot be decoded as an image ({exc}); remove or replace it") from exc
        pixels = self.pre.normalize(pixels.reshape(self.height, self.width, self.channels))
        return (pixels if self.layout == "nhwc" else pixels.transpose(2, 0, 1))[np.newaxis]

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending: deque = deque()
            files = iter(self.files)
            for path in files:
                pending.append(pool.submit(self.load, path))
                if len(pending) >= PREFETCH:
                    break
            while pending:
                sample = pending.popleft().result()
                nxt = next(files, None)
                if nxt is not None:
                    pending.append(pool.submit(self.load, nxt))
                yield [sample]


def _check_mode(path: Path, mode: str) -> None:
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise DataError(f"{path}: {mode} (16-bit or float) images are not supported; save it as 8-bit RGB or grayscale")


def _resize(img, width: int, height: int, mode: str):
    from PIL import Image, ImageOps

    if img.size == (width, height):
        return img
    if mode == "crop":
        return ImageOps.fit(img, (width, height), Image.Resampling.BILINEAR)
    if mode == "pad":
        return ImageOps.pad(img, (width, height), Image.Resampling.BILINEAR, color=0)
    return img.resize((width, height), Image.Resampling.BILINEAR)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from exc


def _load_npz(path: Path, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.files)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    names = [s.name for s in specs]
    if len(specs) == 1 and names[0] not in keys:
        key = "x" if "x" in keys else keys[0] if len(keys) == 1 else None
        if key is None:
            raise DataError(f"{path}: holds {keys}; name the array '{names[0]}' or 'x'")
        chosen = {names[0]: key}
    else:
        missing = [n for n in names if n not in keys]
        if missing:
            raise DataError(f"{path}: no array for model input(s) {missing}; it holds {keys}")
        chosen = {n: n for n in names}
    # an optional integer array 'y' holds one class label per sample; an optional 'starts' marks
    # (nonzero) the samples where a sequence starts, for streaming validation (--feedback)
    chosen.update({label: key for label, key in (("__labels__", "y"), ("__starts__", "starts")) if key in keys})
    arrays = {}
    for name, key in chosen.items():
        try:
            arrays[name] = archive[key]
        except Exception as exc:  # an object array (needs pickle), a damaged member
            raise DataError(
                f"{path}: its member {key!r} is not a plain numeric array ({' '.join(str(exc).split())[:160]})"
            ) from None
        if not isinstance(arrays[name], np.ndarray):  # numpy hands a member that is not an .npy back as bytes
            raise DataError(f"{path}: its member {key!r} is not an .npy array")
    return arrays


class ArraySource(SampleSource):
    """Arrays shaped (N, *input shape): one sample is one input as the model declares it, its own
    batch axis wherever it is (a recurrent state [layers, 1, units]). An input whose first axis is
    a batch of 1 also takes (N, *input shape without it)."""

    def __init__(
        self,
        path: Path,
        specs: list[InputSpec],
        arrays: dict[str, np.ndarray] | None,
        limit: int | None,
        seed: int,
        labels: np.ndarray | None = None,
    ):
        if arrays is None:
            raise DataError(
                f"{path}: a .npy feeds one input, but the model takes {len(specs)}; pass a .npz with one key per input"
            )
        counts = set()
        self.whole: dict[str, bool] = {}  # per input: one array row is the whole input (N, *shape), else a batch-1 row
        for spec in specs:
            array = arrays[spec.name]
            shape = tuple(spec.shape)
            if tuple(array.shape[1:]) == shape and array.ndim == len(shape) + 1:
                self.whole[spec.name] = True
            elif array.ndim == len(shape) and shape[:1] == (1,) and tuple(array.shape[1:]) == shape[1:]:
                self.whole[spec.name] = False
            else:
                forms = f"[N, {', '.join(map(str, shape))}]" + (
                    f" or [N, {', '.join(map(str, shape[1:]))}]" if shape[:1] == (1,) else ""
                )
                raise DataError(
                    f"{path}: array for input '{spec.name}' has shape {list(array.shape)}; the model declares the "
                    f"input {list(shape)}, so edgeq feeds arrays shaped {forms} (N samples)"
                )
            if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_):
                raise DataError(
                    f"{path}: array for input '{spec.name}' has dtype {array.dtype}; expected real numbers (integers or floats)"
                )
            counts.add(array.shape[0])
        if len(counts) != 1 or 0 in counts:
            raise DataError(f"{path}: the inputs hold different or zero sample counts {sorted(counts)}")
        self.path, self.specs, self.arrays = path, specs, arrays
        self.starts: set[int] = set()  # rows where a sequence starts (a .npz's 'starts')
        self.available = counts.pop()
        self.indices = _pick(self.available, limit, seed)
        if labels is not None:
            whole = np.issubdtype(labels.dtype, np.integer) or (
                np.issubdtype(labels.dtype, np.floating)
                and bool(np.all(np.isfinite(labels)))
                and bool(np.all(labels == np.round(labels)))
            )
            if labels.ndim != 1 or not whole:
                raise DataError(
                    f"{path}: 'y' must be one whole-number class label per sample (got {labels.dtype} {list(labels.shape)})"
                )
            if labels.shape[:1] != (self.available,):
                raise DataError(f"{path}: 'y' holds {labels.shape[0] if labels.ndim else 0} labels for {self.available} samples")
            self.labels = [int(labels[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        return f"{len(self.indices)} of {self.available} samples in {self.path}"

    def where(self, position: int) -> str:
        return f"row {int(self.indices[position])} of {self.path}"

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        for i in self.indices:
            with np.errstate(all="ignore"):  # a float64 past float32's range becomes inf, refused below
                sample = [
                    np.asarray(self.arrays[s.name][i] if self.whole[s.name] else self.arrays[s.name][i : i + 1], dtype=np.float32)
                    for s in self.specs
                ]
            for spec, array in zip(self.specs, sample):
                if not np.all(np.isfinite(array)):  # before anything casts it (NaN to int8 is any value)
                    raise DataError(
                        f"row {int(i)} of {self.path} has NaN or infinite values in input '{spec.name}' "
                        "(as float32); fix or drop it"
                    )
            yield sample


@dataclass
class Audit:
    """Checks every sample as it streams by, and fingerprints what was used.

    Errors (non-finite values) stop the stream; findings that still allow a correct conversion
    (constant inputs, values far outside the preprocessing's range) are returned as warnings.
    """

    specs: list[InputSpec]
    expected_range: tuple[float, float] | None = None
    unscaled_warning: bool = False  # arrays given without any declared range: warn about raw 0..255 values
    described: str = "the samples"  # where they come from, for messages

    def __post_init__(self) -> None:
        self.count = 0
        self.digest = hashlib.sha256()
        self.low = [np.inf] * len(self.specs)
        self.high = [-np.inf] * len(self.specs)
        self.first: list[np.ndarray] | None = None
        self.all_same = True

    def watch(self, source: SampleSource) -> Iterator[list[np.ndarray]]:
        for sample in source:
            for spec, array in zip(self.specs, sample):
                if not np.all(np.isfinite(array)):
                    raise DataError(
                        f"{source.where(self.count)} has NaN or infinite values in input '{spec.name}'; fix or drop it"
                    )
            for k, array in enumerate(sample):
                self.low[k] = min(self.low[k], float(array.min()))
                self.high[k] = max(self.high[k], float(array.max()))
                self.digest.update(np.ascontiguousarray(array).tobytes())
            if self.first is None:
                self.first = sample
            elif self.all_same and not all(np.array_equal(a, b) for a, b in zip(sample, self.first)):
                self.all_same = False
            self.count += 1
            yield sample

    @property
    def fingerprint(self) -> str:
        return f"sha256:{self.digest.hexdigest()}"

    def warnings(self) -> list[str]:
        found = []
        if self.count > 1 and self.all_same:
            found.append(f"all {self.count} samples are identical: calibration sees one point; use varied real samples")
        for spec, lo, hi in zip(self.specs, self.low, self.high):
            if self.count and lo == hi:
                found.append(f"input '{spec.name}' is constant ({lo}) across all samples: its quantization range is degenerate")
            if self.expected_range is None and self.count and self.unscaled_warning and lo >= 0 and 50 <= hi <= 255:
                found.append(
                    f"input '{spec.name}' spans [{lo:.4g}, {hi:.4g}], like raw 0..255 pixels, and no --range/--mean/--std "
                    "was given: if the model was trained on scaled inputs (0..1, -1..1), scale the arrays the same way; "
                    "if it takes raw pixels, pass --range 0,255 to say so"
                )
            if self.expected_range and self.count:
                elo, ehi = self.expected_range
                slack = 0.1 * (ehi - elo)
                if lo < elo - slack or hi > ehi + slack:
                    found.append(
                        f"input '{spec.name}' spans [{lo:.4g}, {hi:.4g}], far outside the expected [{elo:g}, {ehi:g}]; "
                        "check --range/--mean/--std"
                    )
        return found
