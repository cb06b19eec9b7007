"""Untrusted text (names from model files, results and profiles) made safe for where it is shown.

A tensor name is attacker-controlled: in a Markdown report it could forge a heading, a "PASSED"
badge or an image from another host; on a terminal it could move the cursor or set the title.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#!|~])")


def md(text: object) -> str:
    """One Markdown table cell or inline text: newlines folded, control characters dropped, and
    every character GitHub gives a meaning escaped."""
    folded = " ".join(str(text).splitlines())
    return _MARKDOWN.sub(r"\\\1", _CONTROL.sub("", folded))


def terminal(text: object) -> str:
    """Control characters (escape sequences, carriage returns, newlines) shown as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def html_text(text: object) -> str:
    """HTML text or attribute: everything escaped, control characters shown as \\xNN."""
    import html

    return html.escape(terminal(text))
