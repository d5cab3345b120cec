"""Fixtures of the dnssrv plugin's tests; servers come from pytest_sd's fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dnssrv_helpers import MakeInstancer, MakeRegistrar

import sd_core
from sd_core import Instancer, Registrar, Registration


@pytest.fixture
def make_instancer() -> Iterator[MakeInstancer]:
    """Make dnssrv instancers (``make(service, **options)``); stopped after the test."""
    made: list[Instancer] = []

    def make(service: str, **options: Any) -> Instancer:
        instancer = sd_core.instancer("dnssrv", service, **options)
        made.append(instancer)
        return instancer

    yield make
    for instancer in made:
        instancer.stop()


@pytest.fixture
def make_registrar() -> Iterator[MakeRegistrar]:
    """Make dnssrv registrars (not registered yet); closed after the test."""
    made: list[Registrar] = []

    def make(registration: Registration, **options: Any) -> Registrar:
        registrar = sd_core.registrar("dnssrv", registration, **options)
        made.append(registrar)
        return registrar

    yield make
    for registrar in reversed(made):
        registrar.close()
