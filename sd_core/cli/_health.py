"""Showing a registrar's health on the terminal as it changes."""

from __future__ import annotations

from collections.abc import Callable

import click

from sd_core._health import RegistrarHealth, RegistrarState
from sd_core._instance import Registration

__all__ = ["health_printer"]

_QUIET = frozenset({RegistrarState.IDLE, RegistrarState.CLOSED})
"""States the commands announce themselves ("registered …", "deregistered …")."""


def health_printer(reg: Registration, backend_id: str) -> Callable[[RegistrarHealth], None]:
    """A health listener printing each change of state to stderr (``sd: health of …``)."""
    shown: list[RegistrarState] = [RegistrarState.REGISTERED]

    def show(health: RegistrarHealth) -> None:
        if health.state in _QUIET or health.state is shown[-1]:
            return
        shown.append(health.state)
        click.echo(f"sd: registration {reg.service} {backend_id}: {health}", err=True)

    return show
