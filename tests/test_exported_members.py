"""The public surfaces: sd_core (what users call) and sd_core.plugin (what plugin authors
build on), each sorted, complete and documented, and apart from each other."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import sd_core
import sd_core.plugin

SURFACES = [sd_core, sd_core.plugin]


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's order for ``__all__``: CONSTANTS, then Classes, then functions (by name)."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("module", SURFACES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(module: ModuleType) -> None:
    assert module.__all__ == sorted(set(module.__all__), key=_isort_key)


@pytest.mark.parametrize("module", SURFACES, ids=lambda m: m.__name__)
def test_every_exported_name_exists_and_the_modules_behind_are_private(module: ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), name
    for name, value in vars(module).items():
        if inspect.isclass(value) or inspect.isfunction(value):
            assert name in module.__all__ or name.startswith("_"), f"{name} is not in __all__"


@pytest.mark.parametrize("module", SURFACES, ids=lambda m: m.__name__)
def test_public_names_have_docstrings(module: ModuleType) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_users_and_plugin_authors_get_different_names() -> None:
    assert not set(sd_core.__all__) & set(sd_core.plugin.__all__)
    for name in ("Backend", "Option", "BaseRegistrar", "WatchInstancer", "hookimpl", "Backoff"):
        assert not hasattr(sd_core, name), f"sd_core.{name} belongs to sd_core.plugin"
