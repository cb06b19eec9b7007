"""What decides the quantized bytes: the mode, the I/O type, the range method, the samples and
their preprocessing. Each setting has one typed form, parsed once where it comes in (the command
line, the API, a manifest) and carried as such down to where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from edgeq.core.errors import UsageError
from edgeq.data.samples import InputSpec, Preprocessing, SampleSource, open_samples


class Mode(str, Enum):
    INT8 = "int8"
    INT8_FALLBACK = "int8-fallback"
    INT16X8 = "int16x8"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"

    @classmethod
    def parse(cls, text: str | Mode) -> Mode:
        try:
            return cls(text)
        except ValueError:
            raise UsageError(f"--mode {text!r}: use one of {', '.join(m.value for m in cls)}") from None

    @property
    def io_types(self) -> tuple[str, ...]:
        """The I/O types the mode allows, its default first."""
        return {"int16x8": ("int16", "float32"), "dynamic": ("float32",), "float16": ("float32",)}.get(
            self.value, ("int8", "uint8", "float32")
        )

    @property
    def calibrates(self) -> bool:
        """Activation ranges from samples: the full-integer modes."""
        return self in (Mode.INT8, Mode.INT8_FALLBACK, Mode.INT16X8)

    @property
    def int8_activations(self) -> bool:
        """int8 activations, so layers can be kept in float and ranges chosen per method."""
        return self in (Mode.INT8, Mode.INT8_FALLBACK)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Method:
    """An activation-range method: minmax (TensorFlow's), percentile[:P], mse, entropy,
    moving-average (ai-edge-quantizer's); or auto, which tries them on --eval-data and settles on
    one (a finished recipe never says auto)."""

    name: str  # minmax | percentile | mse | entropy | moving-average | auto
    percentile: float = 99.99

    @classmethod
    def parse(cls, text: str | Method) -> Method:
        if isinstance(text, Method):
            return text
        name, _, arg = text.partition(":")
        if name not in ("minmax", "percentile", "mse", "entropy", "moving-average", "auto") or (arg and name != "percentile"):
            raise UsageError(f"--calibration {text!r}: use minmax, percentile[:P], mse, entropy, moving-average or auto")
        if not arg:
            return cls(name)
        try:
            p = float(arg)
        except ValueError:
            raise UsageError(f"--calibration {text!r}: P must be a number, e.g. percentile:99.99") from None
        if not 50 < p < 100:
            raise UsageError(f"--calibration {text!r}: P must be between 50 and 100")
        return cls(name, p)

    @property
    def is_auto(self) -> bool:
        return self.name == "auto"

    @property
    def is_minmax(self) -> bool:
        return self.name == "minmax"

    def __str__(self) -> str:
        return f"percentile:{self.percentile:g}" if self.name == "percentile" else self.name

    def to_json_text(self) -> str:
        return str(self)

    @classmethod
    def from_json_text(cls, text: str) -> Method:
        return cls.parse(text)


MINMAX = Method("minmax")
AS_RECIPE = -1
REFINEMENTS = ("none", "bias", "rounding", "auto")  # Recipe.open: as many samples as the recipe says


@dataclass(frozen=True)
class Recipe:
    """What decides the quantized bytes, and nothing else (no paths to write, no job counts): the
    same recipe on the same samples gives the same model."""

    mode: Mode = Mode.INT8
    io: str | None = None  # default: the mode's first I/O type
    per_tensor: bool = False
    keep_float: tuple[str, ...] = ()
    calibration: Method = MINMAX
    signatures: tuple[str, ...] = ("serving_default",)  # SavedModel signature keys, or ("all",)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    samples: int = 200
    seed: int = 0
    data: str | None = None  # the calibration samples' path, as given
    fingerprint: str | None = None  # sha256 over the calibration samples as fed
    channels_last: bool = False  # a PyTorch source exported with NHWC inputs
    rewrites: tuple[str, ...] = ()  # graph rewrites of the calibrated graph (edgeq.tflite.rewrites), in order
    refine: str = "none"  # none | bias | rounding | auto (edgeq.conversion.refinement.bias, edgeq.conversion.refinement.rounding)
    int16_layers: tuple[str, ...] = ()  # nodes with 16-bit activations, int8 weights (a16w8; edgeq.conversion.a16w8)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        object.__setattr__(self, "calibration", Method.parse(self.calibration))
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        object.__setattr__(self, "signatures", tuple(self.signatures))
        object.__setattr__(self, "rewrites", tuple(self.rewrites))
        object.__setattr__(self, "int16_layers", tuple(self.int16_layers))
        if self.io is None:  # the type the mode defaults to, written down
            object.__setattr__(self, "io", self.mode.io_types[0])
        if self.io not in self.mode.io_types:
            raise UsageError(f"--io {self.io} does not go with --mode {self.mode}; use {' or '.join(self.mode.io_types)}")
        if self.int16_layers and (self.mode != Mode.INT8 or self.io != "int8" or self.refine != "none"):
            raise UsageError("16-bit layers (int16_layers) go with --mode int8 and --io int8, without --refine")
        if self.keep_float and not self.mode.int8_activations:
            raise UsageError(f"--keep-float works with --mode int8 or int8-fallback, not {self.mode}")
        if self.refine not in REFINEMENTS:
            raise UsageError(f"--refine {self.refine!r}: use {' or '.join(REFINEMENTS)}")
        if self.refine != "none" and not self.mode.int8_activations:
            raise UsageError(f"--refine {self.refine} corrects int8 layers; it does not go with --mode {self.mode}")
        if self.samples < 1:
            raise UsageError(f"--samples must be at least 1, got {self.samples}")
        if not self.calibration.is_minmax and not self.mode.int8_activations:
            raise UsageError(
                f"--calibration {self.calibration} sets int8 activation ranges; it does not go with --mode {self.mode}"
            )

    def open(self, path: str | Path, specs: list[InputSpec], count: int | None = AS_RECIPE) -> SampleSource:
        """Samples at `path` through this recipe's preprocessing and seed: its sample count, or
        `count` of them (None: all). Every sample a conversion reads is opened here."""
        return open_samples(path, specs, self.preprocessing, self.samples if count == AS_RECIPE else count, self.seed)

    def carried_out(
        self,
        method: Method | None,
        data: str | None,
        fingerprint: str | None,
        chosen_float: tuple[str, ...] = (),
        rewrites: tuple[str, ...] = (),
        refined: str | None = None,
        int16_layers: tuple[str, ...] = (),
    ) -> Recipe:
        """The recipe as the conversion carried it out: the method `auto` settled on, the samples,
        the nodes and op types the search and --optimize latency kept in float, and the refinement
        --refine auto kept, so that the same recipe on the same samples gives the same bytes
        without searching or judging again."""
        keep = self.keep_float + tuple(n for n in dict.fromkeys(chosen_float) if n not in self.keep_float)
        chosen = self.rewrites + tuple(r for r in rewrites if r not in self.rewrites)
        return replace(
            self,
            calibration=method or self.calibration,
            data=data,
            fingerprint=fingerprint,
            keep_float=keep,
            rewrites=chosen,
            refine=refined or self.refine,
            int16_layers=int16_layers or self.int16_layers,
        )
