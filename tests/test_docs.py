"""The documentation names every public name of sd_core (kept honest by this test)."""

from __future__ import annotations

import re
from pathlib import Path

import sd_core
import sd_core.plugin

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _undocumented(names: list[str], text: str) -> list[str]:
    return [
        name
        for name in names
        if name != "__version__" and not re.search(rf"`{re.escape(name)}[`(.]", text)
    ]


def test_every_public_name_is_documented() -> None:
    text = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    missing = _undocumented(sd_core.__all__, text)
    assert missing == [], f"not documented under docs/: {missing}"


def test_every_name_of_the_plugin_kit_is_documented_in_the_plugin_guide() -> None:
    missing = _undocumented(sd_core.plugin.__all__, (DOCS / "plugins.md").read_text())
    assert missing == [], f"not documented in docs/plugins.md: {missing}"
