"""The semantics every backend shares, checked against each backend in ``BACKENDS``."""

from __future__ import annotations

import signal

import pytest

from sd_core import Event, Registration
from sd_core.testing import wait_for_event as wait_for
from sd_core.testing import wait_for_event_async as wait_for_async

from ._support import BackendUnderTest

pytestmark = pytest.mark.requires("discovery", "registration")


def test_registered_instance_appears(backend: BackendUnderTest) -> None:
    reg = backend.registration("a", 20001)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(reg).register()
        event = wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    (instance,) = event.instances
    assert (instance.host, instance.port, instance.service) == (reg.host, 20001, backend.service)
    assert instance.address == reg.address


def test_second_instance_appears_beside_the_first(backend: BackendUnderTest) -> None:
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(backend.registration("a", 20001)).register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        backend.registrar(backend.registration("b", 20002)).register()
        event = wait_for(
            sub, lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b"
        )
    assert sorted(i.port for i in event.instances) == [20001, 20002]


def test_deregister_removes_the_instance(backend: BackendUnderTest) -> None:
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        first = backend.registrar(backend.registration("a", 20001))
        first.register()
        backend.registrar(backend.registration("b", 20002)).register()
        wait_for(sub, lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b")
        first.deregister()
        first.deregister()  # idempotent
        wait_for(sub, lambda e: backend.ids(e) == {"b"}, backend.propagation, "only b")


def test_registration_is_idempotent(backend: BackendUnderTest) -> None:
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        registrar.register()
        registrar.register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        registrar.deregister()
        wait_for(sub, lambda e: not e.instances, backend.propagation, "no instance")
        registrar.register()  # a deregistered registrar may register again
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a again")


def test_subscriber_gets_the_current_state_at_once(backend: BackendUnderTest) -> None:
    backend.registrar(backend.registration("a", 20001)).register()
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        received: list[Event] = []
        instancer.register(received.append)
        # Delivered inside register(): no waiting.
        assert [backend.ids(e) for e in received] == [{"a"}]
        instancer.deregister(received.append)


def test_an_empty_service_is_an_empty_set_not_an_error(backend: BackendUnderTest) -> None:
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: True, backend.propagation, "a first event")
    assert event.ok
    assert event.instances == ()


def test_identical_states_are_not_sent_again(backend: BackendUnderTest) -> None:
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        registrar.register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        registrar.register()
        # Over a whole TTL the registration is renewed several times; nothing changes.
        with pytest.raises(TimeoutError):
            sub.get(timeout=backend.ttl)


@pytest.mark.requires("process_death")
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_disappears_within_its_ttl(backend: BackendUnderTest) -> None:
    reg = backend.registration("doomed", 20001)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        child = backend.spawn_registrar(reg)
        wait_for(sub, lambda e: backend.ids(e) == {"doomed"}, backend.propagation, "the child")
        child.kill()
        limit = reg.ttl + backend.spec.death_margin
        wait_for(sub, lambda e: not e.instances, limit, "the killed child gone")


def test_a_registrar_context_manager_deregisters_on_exit(backend: BackendUnderTest) -> None:
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        with backend.registrar(backend.registration("a", 20001)) as registrar:
            wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
            assert registrar.registration.id == "a"
        wait_for(sub, lambda e: not e.instances, backend.propagation, "no instance")


async def test_a_registrar_async_context_manager_deregisters_on_exit(
    backend: BackendUnderTest,
) -> None:
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        async with backend.registrar(backend.registration("a", 20001)):
            await wait_for_async(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "a")
        await wait_for_async(sub, lambda e: not e.instances, backend.propagation, "none")


@pytest.mark.requires("tags", "meta")
def test_tags_and_metadata_survive_the_round_trip(backend: BackendUnderTest) -> None:
    tags = frozenset({"prod", "v2", "ünïcode"})
    meta = {"version": "1.4.2", "region": "eu-west", "note": "spaces and ünïcode"}
    reg = backend.registration("a", 20001, tags=tags, meta=meta)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(reg).register()
        event = wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    (instance,) = event.instances
    assert instance.tags == tags
    assert dict(instance.meta) == meta


@pytest.mark.requires("weight", "zone")
def test_weight_and_zone_survive_the_round_trip(backend: BackendUnderTest) -> None:
    reg = backend.registration("a", 20001, weight=7, zone="zone-b")
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(reg).register()
        event = wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    (instance,) = event.instances
    assert (instance.weight, instance.zone) == (7, "zone-b")


def test_services_are_kept_apart(backend: BackendUnderTest) -> None:
    other = Registration(f"{backend.service}-other", "127.0.0.1", 20002, id="b", ttl=backend.ttl)
    with (
        backend.instancer() as mine,
        mine.subscribe() as my_sub,
        backend.instancer(other.service) as theirs,
        theirs.subscribe() as their_sub,
    ):
        backend.registrar(backend.registration("a", 20001)).register()
        backend.registrar(other).register()
        wait_for(my_sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "only a")
        wait_for(their_sub, lambda e: backend.ids(e) == {"b"}, backend.propagation, "only b")
        current: list[Event] = []
        mine.register(current.append)
        assert [backend.ids(e) for e in current] == [{"a"}]


def test_stop_ends_the_subscription(backend: BackendUnderTest) -> None:
    instancer = backend.instancer()
    sub = instancer.subscribe()
    wait_for(sub, lambda e: True, backend.propagation, "a first event")
    instancer.stop()
    with pytest.raises(StopIteration):
        sub.get(timeout=backend.propagation)
    assert sub.closed
