"""Fixtures of the Consul plugin's tests; servers come from pytest_sd's fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from consul_helpers import FAST, MakeInstancer, MakeRegistrar
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Instancer, Registrar, Registration


@pytest.fixture
def options(consul_server: ConsulServer) -> dict[str, Any]:
    """Options reaching the test agent, with FAST timings."""
    return {"address": consul_server.address, **FAST}


@pytest.fixture
def make_instancer(options: dict[str, Any]) -> Iterator[MakeInstancer]:
    """Make consul instancers (the test's options, overridable); stopped after the test."""
    made: list[Instancer] = []

    def make(service: str, **overrides: Any) -> Instancer:
        instancer = sd_core.instancer("consul", service, **{**options, **overrides})
        made.append(instancer)
        return instancer

    yield make
    for instancer in made:
        instancer.stop()


@pytest.fixture
def make_registrar(options: dict[str, Any]) -> Iterator[MakeRegistrar]:
    """Make consul registrars (not registered yet); closed after the test."""
    made: list[Registrar] = []

    def make(registration: Registration, **overrides: Any) -> Registrar:
        keep = {k: v for k, v in options.items() if k not in ("wait", "retry_max")}
        registrar = sd_core.registrar("consul", registration, **{**keep, **overrides})
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        registrar.close()
