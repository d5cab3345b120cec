"""Consul's DNS interface: services registered in Consul (through the consul backend) are
found through their SRV records, with Consul's weights, in both of Consul's name forms."""

from __future__ import annotations

import pytest
from dnssrv_helpers import MakeInstancer, summary
from pytest_sd import wait_for_event as wait_for
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Registration


@pytest.mark.parametrize("form", ["service name", "rfc 2782 name", "consul name"])
def test_services_registered_in_consul_are_found_through_its_dns_interface(
    form: str, consul_server: ConsulServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    service = sd_namespace
    dns = {"address": f"{consul_server.host}:{consul_server.dns_port}", "timeout": 1.0}
    # Consul answers with TTL 0: the lookups repeat at min_refresh.
    refresh = {"min_refresh": 0.2, "max_refresh": 1.0}
    name, options = {
        "service name": (service, {"domain": "service.consul"}),
        "rfc 2782 name": (f"_{service}._tcp.service.consul", {}),
        "consul name": (f"{service}.service.consul", {}),
    }[form]
    registrations = [
        Registration(service, "127.0.0.5", 8080, id=f"{service}-a", weight=7),
        Registration(service, "::1", 8081, id=f"{service}-b", weight=2),
    ]
    instancer = make_instancer(name, **dns, **refresh, **options)
    with instancer.subscribe() as sub:
        assert wait_for(sub, lambda e: True, 5, "a first event").instances == ()
        registrars = [
            sd_core.registrar("consul", reg, address=consul_server.address, timeout=2.0)
            for reg in registrations
        ]
        try:
            for registrar in registrars:
                registrar.register()
            event = wait_for(sub, lambda e: len(e.instances) == 2, 5, "both instances")
            # Consul's SRV targets are <hex address>.addr.<dc>.consul for a service address.
            assert {(h, p, w) for h, p, _prio, w, _t in summary(event)} == {
                ("127.0.0.5", 8080, 7),
                ("::1", 8081, 2),
            }
            assert all(t.endswith(".addr.dc1.consul") for *_, t in summary(event))
            assert {i.service for i in event.instances} == {name}
            registrars[0].deregister()
            event = wait_for(sub, lambda e: len(e.instances) == 1, 5, "b alone")
            assert [i.port for i in event.instances] == [8081]
        finally:
            for registrar in registrars:
                registrar.close()
        wait_for(sub, lambda e: e.ok and not e.instances, 5, "no instance")
