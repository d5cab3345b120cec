"""The version of sd-core, as installed.

The one place the version is written is ``pyproject.toml`` (every distribution of the project
is released with it: see docs/install.md, "Versions"); the code reads it back from the
installed distribution's metadata instead of repeating it.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["__version__"]

DISTRIBUTION = "sd-core"


def _installed_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree
        return "0+unknown"


__version__ = _installed_version()
