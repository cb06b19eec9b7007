"""How to run one conversion: its recipe (what decides the bytes) and how to carry it out (where
the source's code is, the jobs, the search's data and budget, the cache, the targets to check)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypedDict, Unpack

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.data.samples import Preprocessing, SampleSource
from edgeq.records.budget import Budget
from edgeq.records.manifest import RunOptions
from edgeq.records.recipe import Method, Mode, Recipe
from edgeq.scoring.roles import parse_feedback, roles_given
from edgeq.targets import TARGETS

RECIPE_FIELDS = frozenset(f.name for f in fields(Recipe))
BUDGET_FIELDS = tuple(f.name for f in fields(Budget))
PREPROCESSING_FIELDS = tuple(f.name for f in fields(Preprocessing))


class ConvertSettings(TypedDict, total=False):
    """The API's keyword settings of a conversion, one per command-line flag (a type checker checks
    each); ConvertOptions.of sorts them into the groups. None is "not given": the group's default."""

    recipe: Recipe  # a manifest's recipe, to convert again as it was; the settings below go on top
    # the recipe
    mode: Mode | str
    io: str | None
    per_tensor: bool
    keep_float: Sequence[str]
    calibration: Method | str
    signatures: Sequence[str]
    samples: int | None
    seed: int
    channels_last: bool
    rewrites: Sequence[str]
    refine: str
    # preprocessing, as a whole or flag by flag
    preprocessing: Preprocessing
    color: str | None
    resize: str | None
    value_range: str | None
    mean: Sequence[float] | None
    std: Sequence[float] | None
    layout: str | None
    # the budget, as a whole or limit by limit
    budget: Budget
    max_drop: float | None
    min_agreement: float | None
    min_sqnr: float | None
    min_iou: float | None
    # the rest of ConvertOptions
    custom_objects: str | None
    trust_model: bool
    input_shapes: Sequence[str]
    jobs: int | None
    cluster: str | None
    targets: Sequence[str]
    eval_data: str | None
    max_float_layers: int | None
    search_seconds: float | None
    allow_int16x8: bool
    cache: bool
    optimize: str | None
    device: str | None
    output_roles: Mapping[str, str]
    output_role: Sequence[str]  # KEY=ROLE strings, as the flag
    feedback: Sequence[str] | Mapping[str, str]


# a float graph this small (the 8x8 digits CNN: 0.07 s for 200 samples either way) calibrates as fast on one thread
SMALL_GRAPH = 1 << 20


@dataclass(frozen=True)
class ConvertOptions:
    recipe: Recipe = field(default_factory=Recipe)
    custom_objects: str | None = None  # a .py with the Keras model's custom classes
    trust_model: bool = False  # load a file that holds code (edgeq.frameworks.trust)
    input_shapes: tuple[str, ...] = ()
    jobs: int | None = None  # calibration processes; default: the CPU cores available
    targets: tuple[str, ...] = ()  # edgetpu | nnapi | xnnpack: warn about ops that will not run there
    eval_data: str | None = None  # with a budget: search the fewest float layers that meet it
    budget: Budget | None = None
    max_float_layers: int | None = None
    search_seconds: float | None = None  # the search refines its first answer for at most this long (None: no bound)
    allow_int16x8: bool = False  # the search may try 16-bit activations before float layers
    cache: bool = True  # reuse (and keep) calibrations and finished conversions in the user's cache folder
    optimize: str | None = None  # "latency": the fastest candidate on XNNPACK that keeps the budget
    device: str | None = None  # a device profile: --optimize latency times the candidates there
    output_roles: dict[str, str] = field(default_factory=dict)  # output key -> classes | sequence | ctc:B | score | values
    samples_given: bool = True  # --samples was given (else the recipe's default): a shortfall is then worth a warning
    feedback: dict[str, str] = field(default_factory=dict)  # output key -> input key: the budget judges streamed figures
    cluster: str | None = None  # a Ray cluster's address (or `local`): candidates are built and judged there; same bytes

    @classmethod
    def of(cls, **settings: Unpack[ConvertSettings]) -> ConvertOptions:
        """From the API's flat settings (mode=..., calibration=..., jobs=..., min_sqnr=..., mean=...);
        `recipe=` a whole Recipe (a manifest's, to convert again as it was), the flat ones on top."""
        values: dict = {k: v for k, v in settings.items() if v is not None or k == "samples"}
        values["output_roles"] = roles_given(values)  # the command's flag (KEY=ROLE strings) or a dict
        values["feedback"] = parse_feedback(values.pop("feedback", None) or {})
        budget, pre = values.pop("budget", None), values.pop("preprocessing", None)
        limits = {k: values.pop(k) for k in BUDGET_FIELDS if k in values}
        if any(v is not None for v in limits.values()):
            if budget is not None:
                raise UsageError("give the budget as budget=Budget(...) or as max_drop/min_agreement/min_sqnr/min_iou, not both")
            budget = Budget(**limits)
        scaling: dict[str, Any] = {k: v for k in PREPROCESSING_FIELDS if k in values for v in [values.pop(k)] if v is not None}
        if scaling:
            if pre is not None:
                raise UsageError(
                    f"give the preprocessing as preprocessing=Preprocessing(...) or as {', '.join(scaling)}, not both"
                )
            given: dict[str, Any] = {k: tuple(v) if k in ("mean", "std") else v for k, v in scaling.items()}
            pre = Preprocessing(**given)
        values.update({"budget": budget} if budget is not None else {}, **({"preprocessing": pre} if pre is not None else {}))
        samples = values.pop("samples", ...)
        if samples is None:  # not given: the recipe's default, and no claim that it was asked for
            values["samples_given"] = False
        elif samples is not ...:
            values.update(samples=samples)
        base = values.pop("recipe", None)
        if base is not None and not isinstance(base, Recipe):
            raise UsageError(f"recipe= takes an edgeq Recipe (a manifest's .recipe), not a {type(base).__name__}")
        recipe = {k: values.pop(k) for k in list(values) if k in RECIPE_FIELDS}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:  # a caller without a type checker
            raise UsageError(f"unknown conversion option {unknown[0]!r}")
        for name in ("keep_float", "signatures", "rewrites"):
            if name in recipe:
                recipe[name] = tuple(recipe[name])
        for name in ("input_shapes", "targets"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(recipe=replace(base, **recipe) if base is not None else Recipe(**recipe), **values)

    def __post_init__(self) -> None:
        recipe, method = self.recipe, self.recipe.calibration
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if self.budget is not None and self.eval_data is None:
            raise UsageError(
                "the accuracy search needs both --eval-data and a budget (--max-drop, --min-agreement or --min-sqnr)"
            )
        if self.eval_data is not None and self.budget is None and not method.is_auto:
            raise UsageError("--eval-data needs a budget (--max-drop, --min-agreement or --min-sqnr), or --calibration auto")
        if self.feedback and self.eval_data is None:
            raise UsageError("--feedback streams the --eval-data samples for the budget; add --eval-data and a budget")
        if self.eval_data is not None and not recipe.mode.int8_activations:
            raise UsageError(f"--eval-data searches int8 mixes; it does not go with --mode {recipe.mode}")
        if method.is_auto and self.eval_data is None:
            raise UsageError(
                "--calibration auto picks the method by its accuracy: pass --eval-data (and a budget if you have one)"
            )
        if self.optimize not in (None, "latency"):
            raise UsageError(f"--optimize {self.optimize!r}: use latency")
        if self.device and not self.optimize:
            raise UsageError("--device times the --optimize latency candidates on a device; add --optimize latency")
        if self.optimize and not recipe.mode.int8_activations:
            raise UsageError(
                f"--optimize latency chooses which op types stay float in an int8 model; not with --mode {recipe.mode}"
            )
        if (
            self.cluster is not None
            and self.budget is None
            and not method.is_auto
            and recipe.refine != "auto"
            and not self.optimize
        ):
            raise UsageError(
                "--cluster spreads the candidates of a budget's search, --calibration auto, --refine auto and "
                "--optimize latency; this conversion tries none: add one or leave out --cluster"
            )
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown:
            raise UsageError(f"--target {unknown[0]!r}: use one of {', '.join(TARGETS)}")

    def eval_samples(self, specs: list) -> tuple[list[list[np.ndarray]], SampleSource]:
        """The --eval-data samples and their source; in the data's order with --feedback (sequences)."""
        source = self.recipe.open(self.eval_data, specs, None)
        return (source.in_data_order() if self.feedback else list(source)), source

    def calibration_jobs(self, cores: int, graph_bytes: int) -> int:
        """Threads (or processes) that calibrate: --jobs, else the cores, or one for a graph under
        SMALL_GRAPH bytes, which more threads do not speed up. Only the int8 modes calibrate so;
        int16x8 uses TensorFlow's one-step path."""
        if not self.recipe.mode.int8_activations:
            return 1
        return min(self.jobs or (1 if graph_bytes < SMALL_GRAPH else cores), self.recipe.samples)

    def run_options(self) -> RunOptions:
        """What the manifest keeps of these options beside the recipe."""
        budget = None if self.budget is None else {f.name: getattr(self.budget, f.name) for f in fields(self.budget)}
        return RunOptions(
            str(self.recipe.calibration),
            self.custom_objects,
            self.trust_model,
            self.input_shapes,
            self.jobs,
            self.targets,
            self.eval_data,
            budget,
            self.max_float_layers,
            self.search_seconds,
            self.allow_int16x8,
            self.cache,
            self.optimize,
            self.device,
            dict(self.output_roles),
            dict(self.feedback),
        )
