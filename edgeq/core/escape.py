"""Untrusted text (names from model files, data, results and profiles) made safe for where it is shown.

A tensor name is attacker-controlled: in a Markdown report it could forge a heading, a "PASSED"
badge, a link or an image from another host; on a terminal it could move the cursor or set the
title; anywhere, a bidirectional control could make "FAIL" read "PASS". One escaper per format,
applied where a document is put together: Markdown and HTML by the template engine to every value
a template shows (report/documents.py: `md`; `terminal`, then HTML autoescape), the terminal text
where its lines are joined (report/text.py).
"""

from __future__ import annotations

import re

# control characters, line and paragraph separators, and the invisible format characters that
# reorder or hide text: bidi embeddings, overrides and isolates, zero-width spaces and joiners,
# the byte-order mark, Unicode tags
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    r"\ufff9-\ufffb\U000e0000-\U000e007f"
)
_CONTROL = re.compile(f"[{_INVISIBLE}]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#!|~&])")
# GitHub links bare URLs (scheme://, www.) and e-mail addresses, and turns :name: into emoji; a
# backslash before ':' and the '.' of www. stops the first two, an empty comment splits the others
_URL_PARTS = re.compile(r"(:)|(?<=www)(\.)", re.IGNORECASE)
_SPLIT = re.compile(r"(?<=[:@])(?=[\w+-])")


def md(text: object) -> str:
    """One Markdown table cell or inline text: newlines folded, invisible characters dropped,
    every character GitHub gives a meaning escaped, autolinks and emoji shortcodes broken."""
    folded = _CONTROL.sub("", " ".join(str(text).splitlines()))
    escaped = _URL_PARTS.sub(r"\\\1\2", _MARKDOWN.sub(r"\\\1", folded))
    return _SPLIT.sub("<!-- -->", escaped)


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal(text: object) -> str:
    """Control and invisible characters (escape sequences, carriage returns, newlines, bidi
    overrides) shown as \\xNN or \\uNNNN."""
    return _CONTROL.sub(_shown, str(text))
