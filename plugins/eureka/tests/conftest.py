"""Fixtures of the Eureka plugin's tests; servers come from pytest_sd's fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eureka_helpers import MakeInstancer, MakeRegistrar, options_for
from pytest_sd.eureka import EurekaServer
from sd_eureka import EurekaRegistrar

import sd_core
from sd_core import Instancer, Registration


@pytest.fixture
def options(eureka_server: EurekaServer) -> dict[str, Any]:
    """Options reaching the test server, with its credentials and FAST timings."""
    return options_for(eureka_server)


@pytest.fixture
def make_instancer(options: dict[str, Any]) -> Iterator[MakeInstancer]:
    """Make eureka instancers (the test's options, overridable); stopped after the test."""
    made: list[Instancer] = []

    def make(service: str, **overrides: Any) -> Instancer:
        instancer = sd_core.instancer("eureka", service, **{**options, **overrides})
        made.append(instancer)
        return instancer

    yield make
    for instancer in made:
        instancer.stop()


@pytest.fixture
def make_registrar(options: dict[str, Any]) -> Iterator[MakeRegistrar]:
    """Make eureka registrars (not registered yet); closed after the test."""
    made: list[EurekaRegistrar] = []

    def make(registration: Registration, **overrides: Any) -> EurekaRegistrar:
        registrar = sd_core.registrar("eureka", registration, **{**options, **overrides})
        assert isinstance(registrar, EurekaRegistrar)
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        registrar.close()
