"""Every string field of a results JSON holds hostile text, and the Markdown (rendered as GitHub
does, by cmark-gfm), the HTML page and the terminal text show it as text: no control byte, no
bidi control, no raw markup, no link, no image, no forged heading, in any of them.

The results are built from the records' own type hints, so a field added later is covered
without editing this test."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from enum import Enum
from html.parser import HTMLParser
from typing import Any

import pytest

from edgeq.core.errors import DataError, UsageError
from edgeq.core.schema import from_json
from edgeq.validation.results import ValidationResult

HOSTILE = (
    "a|b\n\n# INJECTED\n[click](javascript:alert(1)) ![t](http://evil.example/track.png) <img src=x onerror=alert(1)>"
    " <script>alert(1)</script> \x1b[31mRED\x1b]0;title\x07 \u202eSSAP\u202c \u2066x\u2069 zero\u200bwidth "
    ":white_check_mark: www.evil.example mail@evil.example &#8238; **bold** `code` ~~strike~~"
)
INVISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _plain(hint: Any) -> Any:
    """A legal value of `hint`, for a field that refuses hostile text (an enum-like string)."""
    return _fill(hint, hostile=False)


def _fill(hint: Any, hostile: bool = True) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _fill(float if float in inner else inner[0], hostile)
    if origin is tuple and Ellipsis not in args:
        return [_fill(a, hostile) for a in args]
    if origin in (list, tuple):
        return [_fill(args[0], hostile)]
    if origin is dict:
        return {(HOSTILE if hostile and args[0] is str else "k"): _fill(args[1], hostile)}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return next(iter(hint)).value
    if dataclasses.is_dataclass(hint):
        return _record(hint, hostile)
    if hint is str or hint is Any:
        return HOSTILE if hostile else "values"
    if hint is bool:
        return False
    if hint is int:
        return 1
    if hint is float:
        return 1.5
    return None


def _record(cls: Any, hostile: bool) -> dict[str, Any]:
    """Every field filled, each hostile where the record takes it (a field it refuses keeps a plain value)."""
    hints = typing.get_type_hints(cls)
    data: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if hasattr(hints[f.name], "from_json_text"):
            continue
        for value in (_fill(hints[f.name], hostile), _plain(hints[f.name])) if hostile else (_plain(hints[f.name]),):
            try:
                trial = {**_required(cls, hints), **data, f.name: value}
                cls.from_json(trial) if cls is ValidationResult else from_json(cls, trial, "x")
            except (DataError, UsageError, TypeError, ValueError, KeyError):
                continue
            data[f.name] = value
            break
    return data


def _required(cls: Any, hints: dict[str, Any]) -> dict[str, Any]:
    return {
        f.name: _plain(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


@pytest.fixture(scope="module")
def hostile() -> ValidationResult:
    data = _record(ValidationResult, hostile=True)
    data["passed"] = False
    return ValidationResult.from_json(data)


def test_every_string_field_is_hostile(hostile):
    def strings(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for k, v in node.items():
                yield k
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)

    found = list(strings(hostile.to_json()))
    assert sum(s == HOSTILE for s in found) >= 60, "the filler reached too few fields"


def test_markdown_renders_hostile_text_as_text(hostile):
    import cmarkgfm
    from cmarkgfm.cmark import Options

    from edgeq.report.documents import markdown

    text = markdown(hostile)
    assert not INVISIBLE.search(text)
    page = cmarkgfm.github_flavored_markdown_to_html(text, options=Options.CMARK_OPT_UNSAFE)  # GitHub keeps what survives
    tags = {t.lower() for t in re.findall(r"<\s*([a-zA-Z0-9]+)", page)}
    assert tags <= {"h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "strong", "em", "br"}, tags
    assert "INJECTED</h" not in page and "evil.example" not in re.sub(r">[^<]*<", "><", page)  # only inside text
    assert not re.search(r":white_check_mark:", page)  # split, so GitHub draws no emoji
    assert "\u202e" not in page and "&#8238;" not in page.replace("&amp;#8238;", "")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += attrs


def test_html_renders_hostile_text_as_text(hostile):
    from edgeq.report.documents import html_page

    page = html_page(hostile)
    assert not INVISIBLE.search(page)
    parser = _Tags()
    parser.feed(page)
    assert parser.tags <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "p",
        "code",
        "div",
        "b",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "ul",
        "li",
        "img",
        "small",
    }, parser.tags
    assert all(name in ("lang", "charset", "class", "alt", "src") for name, _ in parser.attributes)
    assert all(value.startswith("data:image/png;base64,") for name, value in parser.attributes if name == "src")


def test_terminal_text_shows_hostile_text_as_text(hostile):
    from edgeq.report.text import validation_text

    text = validation_text(hostile)
    assert not INVISIBLE.search(text) and "\x1b" not in text
    assert not any(line.startswith("# INJECTED") for line in text.splitlines())


def test_report_command_on_a_hostile_results_file(hostile, tmp_path, cli):
    from edgeq.core.fileio import json_bytes

    path = tmp_path / "results.json"
    path.write_bytes(json_bytes(hostile.to_json()))
    for fmt in ("md", "html"):
        code, _, err = cli("report", path, "--format", fmt, "-o", tmp_path / f"r.{fmt}")
        assert code == 0, err
        assert not INVISIBLE.search((tmp_path / f"r.{fmt}").read_text())
