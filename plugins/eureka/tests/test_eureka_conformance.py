"""The Eureka backend joins the conformance suite (pytest_sd.conformance)."""

from __future__ import annotations

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults
from pytest_sd.eureka import EurekaServer


@pytest.fixture
def sd_conformance(eureka_server: EurekaServer) -> Conformance:
    assert eureka_server.password is not None
    return Conformance(
        backend="eureka",
        options={
            # Basic auth as Spring's defaultZone carries it: the URL's credentials.
            "address": eureka_server.credentials_url,
            "refresh": 0.5,
            "timeout": 2.0,
            "retry_max": 1.0,
        },
        # Eureka keeps its registry in memory: a stopped server comes back empty, and
        # registrars put their instances back (what "restart" checks holds all the same).
        capabilities=frozenset(
            {
                "discovery",
                "registration",
                "tags",
                "meta",
                "weight",
                "zone",
                "process_death",
                "set_status",
                "restart",
                "restore",
                "pause",
                "secret",
            }
        ),
        faults=Faults.of(eureka_server),
        # The real password, also given as the option (unused beside the URL's): neither
        # form may show anywhere.
        secret_options={"password": eureka_server.password},
        ttl=2.0,
        # A change passes the server's 1 s response cache and the instancer's 0.5 s delta
        # poll; right after a freeze (SIGSTOP/SIGCONT) the server first catches up on its
        # eviction and cache tasks, which took over 3 s once on a loaded 2-core machine.
        propagation=5.0,
        # Eureka expires a renewed lease twice its duration after the last renewal (its
        # Lease.renew() adds the duration once too often), evicts every second, and the
        # instancer polls every 0.5 s.
        death_margin=4.0,
        recovery=3.0,
        up_status="UP",
        down_status="OUT_OF_SERVICE",
    )
