"""The public surface of sd_core: sorted, complete, documented."""

from __future__ import annotations

import inspect

import sd_core


def test_all_is_sorted_and_unique() -> None:
    assert sd_core.__all__ == sorted(set(sd_core.__all__))


def test_every_exported_name_exists_and_public_modules_are_private() -> None:
    for name in sd_core.__all__:
        assert hasattr(sd_core, name), name
    for name, value in vars(sd_core).items():
        if inspect.isclass(value) or inspect.isfunction(value):
            assert name in sd_core.__all__ or name.startswith("_"), f"{name} is not in __all__"


def test_public_names_have_docstrings() -> None:
    for name in sd_core.__all__:
        value = getattr(sd_core, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
