"""Instancers of one service share one blocking query: they cannot use up the agent's
per-client connection limit (200 by default)."""

from __future__ import annotations

import threading

from consul_helpers import FAST, ids, wait_for
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Registration
from sd_core._connections import connections


def consul_watch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("sd-watch-consul:"))


def test_250_instancers_of_one_service_hold_one_query_and_registration_still_works(
    consul_server: ConsulServer, sd_namespace: str
) -> None:
    options = {"address": consul_server.address, **FAST}
    before = consul_watch_threads()
    instancers = [sd_core.instancer("consul", sd_namespace, **options) for _ in range(250)]
    try:
        assert consul_watch_threads() == before + 1
        registration = Registration(sd_namespace, "127.0.0.1", 20501, id="a", ttl=5)
        with sd_core.registrar("consul", registration, address=consul_server.address):
            for instancer in (instancers[0], instancers[-1]):
                with instancer.subscribe() as sub:
                    wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a")
    finally:
        for instancer in instancers:
            instancer.stop()
    assert consul_watch_threads() == before


def test_two_hundred_instancers_and_ten_registrars_use_one_client(
    consul_server: ConsulServer, sd_namespace: str
) -> None:
    options = {"address": consul_server.address, **FAST}
    before = connections().count("consul")
    same = [sd_core.instancer("consul", sd_namespace, **options) for _ in range(100)]
    many = [sd_core.instancer("consul", f"{sd_namespace}-{n}", **options) for n in range(100)]
    registrars = [
        sd_core.registrar(
            "consul",
            Registration(f"{sd_namespace}-{n}", "127.0.0.1", 20600 + n, ttl=5),
            address=consul_server.address,
            timeout=FAST["timeout"],
        )
        for n in range(10)
    ]
    try:
        assert connections().count("consul") == before + 1
        for registrar in registrars:
            registrar.register()
        for n in (0, 9):
            with many[n].subscribe() as sub:
                wait_for(sub, lambda e: len(e.instances) == 1, 5.0, f"service {n}")
        with same[0].subscribe() as sub:
            wait_for(sub, lambda e: e.ok, 5.0, "a set")
        assert connections().count("consul") == before + 1
    finally:
        for registrar in registrars:
            registrar.close()
        for instancer in same + many:
            instancer.stop()
    assert connections().count("consul") == before
