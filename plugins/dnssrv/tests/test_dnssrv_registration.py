"""Registration by RFC 2136 dynamic updates to BIND, signed with TSIG: what is written, kept,
restored and deleted, and how a refused or badly signed update is reported."""

from __future__ import annotations

import pytest
from dnssrv_helpers import MakeInstancer, MakeRegistrar, bind_options, poll
from pytest_sd import wait_for_event as wait_for
from pytest_sd.dns import BindServer

from sd_core import Registration, RegistrationError
from sd_core.plugin import connections


def srv_records(bind: BindServer, service: str) -> set[tuple[int, int, int, int, str]]:
    """``(ttl, priority, weight, port, target)`` of the SRV records of ``service``."""
    answer = bind.query(f"_{service}._tcp.{bind.zone}", "SRV")
    return {(r.ttl, *r.data) for r in answer.of_type("SRV")}  # type: ignore[misc]


def addresses(bind: BindServer, name: str, rdtype: str = "A") -> set[tuple[int, str]]:
    return {(r.ttl, str(r.data)) for r in bind.query(name, rdtype).of_type(rdtype)}


def test_register_writes_srv_and_address_records_with_the_ttl_and_deregister_deletes_them(
    bind_server: BindServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one", ttl=4.5, weight=7)
    registrar = make_registrar(reg, **bind_options(bind_server, priority=3))
    target = f"one.{sd_namespace}.{bind_server.zone}"
    registrar.register()
    assert srv_records(bind_server, sd_namespace) == {(5, 3, 7, 8080, target)}
    assert addresses(bind_server, target) == {(5, "127.0.0.9")}
    assert registrar.backend_id == f"{target.rstrip('.')}:8080"
    registrar.deregister()
    assert srv_records(bind_server, sd_namespace) == set()
    assert bind_server.query(target, "A").rcode == "NXDOMAIN"


def test_a_host_name_is_the_target_and_no_address_is_written_an_ipv6_host_gets_aaaa(
    bind_server: BindServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    named = Registration(sd_namespace, "api.example.com", 8080, id="named", ttl=3)
    v6 = Registration(sd_namespace, "2001:db8::5", 8081, id="v6", ttl=3)
    make_registrar(named, **bind_options(bind_server)).register()
    make_registrar(v6, **bind_options(bind_server)).register()
    v6_target = f"v6.{sd_namespace}.{bind_server.zone}"
    assert srv_records(bind_server, sd_namespace) == {
        (3, 0, 1, 8080, "api.example.com."),
        (3, 0, 1, 8081, v6_target),
    }
    assert addresses(bind_server, v6_target, "AAAA") == {(3, "2001:db8::5")}
    assert addresses(bind_server, v6_target, "A") == set()


def test_ids_that_are_not_dns_labels_get_a_label_of_their_own(
    bind_server: BindServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    first = Registration(sd_namespace, "127.0.0.1", 8080)  # id "127.0.0.1:8080"
    second = Registration(sd_namespace, "127.0.0.1", 8081, id="Web_1")
    for reg in (first, second):
        make_registrar(reg, **bind_options(bind_server)).register()
    targets = {t for *_, t in srv_records(bind_server, sd_namespace)}
    labels = {t.split(".")[0] for t in targets}
    assert len(labels) == 2
    assert {label.rsplit("-", 1)[0] for label in labels} == {"127-0-0-1-8080", "web-1"}


def test_discovery_sees_what_the_registrar_wrote(
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    options = bind_options(bind_server)
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one", weight=3)
    with make_instancer(sd_namespace, **options).subscribe() as sub:
        make_registrar(reg, **options, priority=2).register()
        event = wait_for(sub, lambda e: len(e.instances) == 1, 5, "the registered instance")
    (instance,) = event.instances
    target = f"one.{sd_namespace}.{bind_server.zone}".rstrip(".")
    assert (instance.host, instance.port, instance.weight, instance.priority) == (
        "127.0.0.9",
        8080,
        3,
        2,
    )
    assert (instance.id, instance.meta["target"]) == (f"{target}:8080", target)


def test_records_an_operator_deleted_are_restored_at_the_next_keepalive(
    bind_server: BindServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one", ttl=1.5)
    registrar = make_registrar(reg, **bind_options(bind_server))
    target = f"one.{sd_namespace}.{bind_server.zone}"
    registrar.register()
    bind_server.nsupdate(f"update delete {target} A")
    poll(lambda: registrar.health.restores == 1, 5, "a restore")
    assert addresses(bind_server, target) == {(2, "127.0.0.9")}
    bind_server.nsupdate(f"update delete _{sd_namespace}._tcp.{bind_server.zone} SRV")
    poll(lambda: registrar.health.restores == 2, 5, "a second restore")
    assert srv_records(bind_server, sd_namespace) == {(2, 0, 1, 8080, target)}
    assert registrar.health.healthy


def test_registering_again_with_another_port_replaces_the_old_record(
    bind_server: BindServer, sd_namespace: str, make_registrar: MakeRegistrar
) -> None:
    target = f"one.{sd_namespace}.{bind_server.zone}"
    options = bind_options(bind_server)
    old = make_registrar(Registration(sd_namespace, "127.0.0.9", 8080, id="one", ttl=30), **options)
    other = make_registrar(
        Registration(sd_namespace, "127.0.0.8", 9000, id="two", ttl=30), **options
    )
    for registrar in (old, other):
        registrar.register()
    # The process restarts on another port and address, its old records still there.
    new = make_registrar(Registration(sd_namespace, "127.0.0.7", 8081, id="one", ttl=30), **options)
    new.register()
    records = srv_records(bind_server, sd_namespace)
    assert {(port, t.split(".")[0]) for *_, port, t in records} == {(8081, "one"), (9000, "two")}
    assert addresses(bind_server, target) == {(30, "127.0.0.7")}


@pytest.fixture
def make_registrar_on(bind_server: BindServer, make_registrar: MakeRegistrar) -> MakeRegistrar:
    """make_registrar with the BIND fixture's options (overridable)."""

    def make(registration: Registration, **overrides: object) -> object:
        return make_registrar(registration, **{**bind_options(bind_server), **overrides})

    return make  # type: ignore[return-value]


def refused(make: MakeRegistrar, reg: Registration, **overrides: object) -> str:
    registrar = make(reg, **overrides)
    with pytest.raises(RegistrationError) as info:
        registrar.register()
    return str(info.value)


def test_a_wrong_secret_an_unknown_key_no_key_or_the_wrong_zone_are_clear_errors(
    bind_server: BindServer, sd_namespace: str, make_registrar_on: MakeRegistrar
) -> None:
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one")
    wrong_secret = refused(make_registrar_on, reg, key_secret="A" * 43 + "=")
    assert "rejected the signature of TSIG key 'sd-test-key'" in wrong_secret
    assert "wrong key_secret" in wrong_secret
    unknown = refused(make_registrar_on, reg, key_name="no-such-key")
    assert "does not know TSIG key 'no-such-key'" in unknown
    unsigned = refused(make_registrar_on, reg, key_name=None, key_secret=None)
    assert "answered REFUSED to the update of zone sd.test." in unsigned
    assert "allow-update" in unsigned
    wrong_zone = refused(make_registrar_on, reg, zone="elsewhere.test", domain=None)
    assert "answered REFUSED to the SRV query" in wrong_zone
    assert "does not serve elsewhere.test." in wrong_zone
    assert srv_records(bind_server, sd_namespace) == set()


def test_a_server_that_does_not_answer_is_a_registration_error_and_a_pending_deregistration(
    bind_server: BindServer, sd_namespace: str, make_registrar_on: MakeRegistrar
) -> None:
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one", ttl=30)
    registrar = make_registrar_on(reg, timeout=0.3)
    registrar.register()
    bind_server.pause()
    try:
        with pytest.raises(
            RegistrationError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.3 s"
        ):
            registrar.deregister()
        assert registrar.health.state.value == "deregistering"
    finally:
        bind_server.resume()
    registrar.deregister()
    assert srv_records(bind_server, sd_namespace) == set()


def test_a_key_file_as_tsig_keygen_writes_it(
    bind_server: BindServer, sd_namespace: str, make_registrar_on: MakeRegistrar
) -> None:
    reg = Registration(sd_namespace, "127.0.0.9", 8080, id="one")
    registrar = make_registrar_on(
        reg, key_name=None, key_secret=None, key_file=str(bind_server.key_path)
    )
    registrar.register()
    assert {p for *_, p, _t in srv_records(bind_server, sd_namespace)} == {8080}


def test_instancers_and_registrars_of_one_server_share_one_client(
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar_on: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    before = connections().count("dnssrv")
    options = bind_options(bind_server)
    instancers = [make_instancer(f"{sd_namespace}-{i}", **options) for i in range(3)]
    registrars = [
        make_registrar_on(Registration(f"{sd_namespace}-{i}", "127.0.0.9", 8080)) for i in range(3)
    ]
    assert connections().count("dnssrv") == before + 1
    for instancer in instancers:
        instancer.stop()
    for registrar in registrars:
        registrar.close()
    assert connections().count("dnssrv") == before
