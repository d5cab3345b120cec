"""One client (one gRPC channel) for every instancer and registrar of the same connection
options in the process; no thread per instancer; one watch stopping leaves the others."""

from __future__ import annotations

import threading
from typing import Any

from etcd_helpers import FAST, ids, poll, wait_for
from pytest_sd.etcd import EtcdServer
from sd_etcd import EtcdRegistrar

import sd_core
from sd_core import Registration
from sd_core.plugin import connections


def test_instancers_and_registrars_of_many_services_share_one_client(
    etcd_server: EtcdServer, sd_namespace: str
) -> None:
    options: dict[str, Any] = {"address": etcd_server.address, **FAST}
    clients = connections().count("etcd")
    threads = {t.name for t in threading.enumerate()}
    services = [f"{sd_namespace}-{i}" for i in range(40)]
    instancers = [sd_core.instancer("etcd", service, **options) for service in services]
    registrars = [
        sd_core.registrar(
            "etcd",
            Registration(service, "127.0.0.1", 20000 + i, id="a", ttl=3.0),
            timeout=options["timeout"],
            address=options["address"],
        )
        for i, service in enumerate(services[:10])
    ]
    try:
        for registrar in registrars:
            registrar.register()
        assert connections().count("etcd") == clients + 1
        assert len({r.client for r in registrars if isinstance(r, EtcdRegistrar)}) == 1
        for instancer, service in zip(instancers, services, strict=True):
            expected = {"a"} if service in services[:10] else set()
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e, x=expected: e.ok and ids(e) == x, 5.0, service)
        new = {t.name for t in threading.enumerate()} - threads
        assert not [name for name in new if name.startswith("sd-watch")], new
        assert len([name for name in new if name.startswith("sd-keepalive")]) == 0, new
        # One watch stops: the others' streams on the same channel go on.
        instancers[0].stop()
        registrars[1].deregister()
        with instancers[1].subscribe() as sub:
            wait_for(sub, lambda e: e.ok and not e.instances, 5.0, "b's instance gone")
    finally:
        for registrar in registrars:
            registrar.close()
        for instancer in instancers:
            instancer.stop()
    poll(lambda: connections().count("etcd") == clients, 5.0, "the client closed")


def test_different_credentials_get_different_clients(etcd_server: EtcdServer) -> None:
    clients = connections().count("etcd")
    made = [
        sd_core.instancer("etcd", "web", address=etcd_server.address, **extra)
        for extra in ({}, {"username": "a", "password": "pw-one"}, {"timeout": 3})
    ]
    try:
        assert connections().count("etcd") == clients + 3
    finally:
        for instancer in made:
            instancer.stop()
    assert connections().count("etcd") == clients
