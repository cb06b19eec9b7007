"""Each conversion setting has one typed form, parsed once: the range method, the mode, the recipe
that holds them, and the options that contain the recipe."""

from __future__ import annotations

import pytest

from edgeq.conversion.options import ConvertOptions
from edgeq.core.errors import DataError, UsageError
from edgeq.core.schema import from_json, to_json
from edgeq.records.budget import Budget
from edgeq.records.recipe import Method, Mode, Recipe


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("minmax", Method("minmax")),
        ("entropy", Method("entropy")),
        ("mse", Method("mse")),
        ("percentile", Method("percentile", 99.99)),
        ("percentile:99.9", Method("percentile", 99.9)),
        ("auto", Method("auto")),
    ],
)
def test_a_method_parses_once_and_writes_back_as_given(text, parsed):
    method = Method.parse(text)
    assert method == parsed and Method.parse(method) is method
    assert Method.parse(str(method)) == method  # the text a manifest keeps reads back the same


@pytest.mark.parametrize(
    "text, why",
    [
        ("kl", "use minmax, percentile"),
        ("entropy:3", "use minmax, percentile"),
        ("percentile:high", "P must be a number"),
        ("percentile:100", "between 50 and 100"),
        ("percentile:40", "between 50 and 100"),
    ],
)
def test_a_wrong_method_is_one_usage_error_naming_it(text, why):
    with pytest.raises(UsageError, match=why):
        Method.parse(text)


def test_a_mode_knows_its_io_types_and_what_it_calibrates():
    assert Mode.parse("int16x8").io_types == ("int16", "float32")
    assert Mode.INT8.calibrates and Mode.INT16X8.calibrates and not Mode.DYNAMIC.calibrates
    assert Mode.INT8_FALLBACK.int8_activations and not Mode.INT16X8.int8_activations
    assert Mode.INT8 == "int8"  # a string enum: comparisons with the flag's text hold
    with pytest.raises(UsageError, match="use one of int8, int8-fallback"):
        Mode.parse("int4")


def test_a_recipe_holds_typed_settings_and_checks_them_together():
    recipe = Recipe(mode="int16x8", calibration="minmax")
    assert recipe.mode is Mode.INT16X8 and recipe.io == "int16" and recipe.calibration == Method("minmax")
    for values, why in (
        ({"mode": "int16x8", "io": "uint8"}, "does not go with --mode int16x8"),
        ({"mode": "dynamic", "keep_float": ("CONV_2D",)}, "--keep-float works with"),
        ({"mode": "float16", "calibration": "entropy"}, "sets int8 activation ranges"),
        ({"samples": 0}, "at least 1"),
    ):
        with pytest.raises(UsageError, match=why):
            Recipe(**values)


def test_a_recipe_round_trips_through_json_and_a_bad_value_names_its_key():
    recipe = Recipe(mode="int8-fallback", keep_float=("probs",), calibration="percentile:99.9", signatures=("embed",), samples=64)
    data = to_json(recipe)
    assert data["mode"] == "int8-fallback" and data["calibration"] == "percentile:99.9"
    assert from_json(Recipe, data, "recipe") == recipe
    with pytest.raises(DataError, match=r"recipe.calibration: --calibration 'kl'"):
        from_json(Recipe, {**data, "calibration": "kl"}, "recipe")
    with pytest.raises(DataError, match=r"recipe.samples: expected an integer"):
        from_json(Recipe, {**data, "samples": "many"}, "recipe")


def test_convert_options_contain_the_recipe_and_check_the_run_settings():
    options = ConvertOptions.of(mode="int8", calibration="auto", samples=32, eval_data="e.npy", budget=Budget(min_sqnr=30))
    assert options.recipe.samples == 32 and options.recipe.calibration.is_auto
    assert options.run_options().calibration == "auto" and options.run_options().budget == {
        "max_drop": None,
        "min_agreement": None,
        "min_sqnr": 30,
        "min_iou": None,
    }
    big, small = 14 << 20, 100 << 10
    assert options.calibration_jobs(8, big) == 8 and ConvertOptions.of(mode="int16x8").calibration_jobs(8, big) == 1
    assert options.calibration_jobs(8, small) == 1  # a small graph: one thread is as fast
    assert ConvertOptions.of(jobs=3).calibration_jobs(8, small) == 3  # --jobs decides when given
    with pytest.raises(UsageError, match="--calibration auto picks the method"):
        ConvertOptions.of(calibration="auto")
    with pytest.raises(UsageError, match="unknown conversion option 'modes'"):
        ConvertOptions.of(modes="int8")
