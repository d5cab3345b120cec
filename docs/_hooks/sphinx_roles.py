"""MkDocs hook: the docstrings are written with reST markup, which the API reference shows as
Markdown would. Roles (``:class:`Backend```) become the plain code they name (``~`` keeps the
last part), and a paragraph ending in ``::`` (before a literal block) ends in one colon."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:attr|class|const|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>"
)
_LITERAL_MARKER = re.compile(r"(?<=\w)::</p>")


def _code(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Called by MkDocs with each page's HTML."""
    return _LITERAL_MARKER.sub(":</p>", _ROLE.sub(_code, html))
