"""The semantics every backend shares: the checks of the conformance suite.

A plugin's test module collects them with ``from pytest_sd.conformance import *`` and
describes its backend with one fixture, ``sd_conformance`` (see :mod:`pytest_sd.conformance`).
Each check says which capabilities it needs with ``@requires(...)``; it is skipped, by
declaration and only so, for a backend that does not declare them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sd_core
from pytest_sd.events import wait_for_event as wait_for
from pytest_sd.events import wait_for_event_async as wait_for_async
from sd_core import Event, Registrar, RegistrarState, SDError
from sd_core._conformance import CAPABILITIES, Conformance
from sd_core._connections import connections
from sd_core._dispatch import dispatcher

from ._support import BackendUnderTest, Latest

__all__ = [
    "sd_conformance_backend",
    "test_a_failed_deregistration_stays_pending_until_close",
    "test_a_killed_process_disappears_within_its_ttl",
    "test_a_registrar_async_context_manager_deregisters_on_exit",
    "test_a_registrar_context_manager_deregisters_on_exit",
    "test_a_service_that_does_not_exist_yet_then_appears",
    "test_an_empty_service_is_an_empty_set_not_an_error",
    "test_changes_elsewhere_and_renewals_send_nothing",
    "test_deregister_and_close_are_idempotent",
    "test_deregister_removes_the_instance",
    "test_everything_converges_after_the_server_was_frozen",
    "test_identical_states_are_not_sent_again",
    "test_instancers_of_one_service_share_one_watch_and_one_client",
    "test_metadata_survives_the_round_trip",
    "test_no_secret_in_reprs_errors_or_logs",
    "test_registered_instance_appears",
    "test_registration_is_idempotent",
    "test_registration_is_restored_after_the_server_lost_its_state",
    "test_second_instance_appears_beside_the_first",
    "test_services_are_kept_apart",
    "test_set_status_hides_and_shows_the_instance",
    "test_stop_and_close_leave_nothing_behind",
    "test_stop_ends_the_subscription",
    "test_subscriber_gets_the_current_state_at_once",
    "test_subscribers_converge_after_the_server_is_back",
    "test_tags_survive_the_round_trip",
    "test_weight_survives_the_round_trip",
    "test_zone_survives_the_round_trip",
]

MARKER = "sd_requires"
"""The marker naming the capabilities a check needs (registered by ``pytest_sd.plugin``)."""


def requires(*capabilities: str) -> pytest.MarkDecorator:
    """Mark a check as needing discovery, registration and ``capabilities``."""
    unknown = set(capabilities) - CAPABILITIES.keys()
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")
    return pytest.mark.sd_requires("discovery", "registration", *capabilities)


def _state(registrar: Registrar) -> RegistrarState:
    """The registrar's state now (a function, so that type checkers do not narrow it)."""
    return registrar.health.state


@pytest.fixture
def sd_conformance_backend(
    request: pytest.FixtureRequest, sd_conformance: Conformance
) -> Iterator[BackendUnderTest]:
    """The backend the ``sd_conformance`` fixture describes, with a fresh service name;
    skips a check that needs a capability the backend does not declare, and cleans up."""
    if not isinstance(sd_conformance, Conformance):
        raise TypeError(
            f"the sd_conformance fixture must return a Conformance, got {sd_conformance!r}"
        )
    for marker in request.node.iter_markers(MARKER):
        for capability in marker.args:
            if capability not in CAPABILITIES:
                raise ValueError(f"unknown capability {capability!r}")
            if capability not in sd_conformance.capabilities:
                pytest.skip(
                    f"the {sd_conformance.backend} backend declares no {capability!r} capability"
                )
    under_test = BackendUnderTest(sd_conformance)
    try:
        yield under_test
    finally:
        under_test.close()


# -- discovery and registration ------------------------------------------------------------
@requires()
def test_registered_instance_appears(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    reg = backend.registration("a", 20001)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(reg).register()
        event = wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    (instance,) = event.instances
    assert (instance.host, instance.port, instance.service) == (reg.host, 20001, backend.service)
    assert instance.address == reg.address


@requires()
def test_second_instance_appears_beside_the_first(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(backend.registration("a", 20001)).register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        backend.registrar(backend.registration("b", 20002)).register()
        event = wait_for(
            sub, lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b"
        )
    assert sorted(i.port for i in event.instances) == [20001, 20002]


@requires()
def test_deregister_removes_the_instance(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        first = backend.registrar(backend.registration("a", 20001))
        first.register()
        backend.registrar(backend.registration("b", 20002)).register()
        wait_for(sub, lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b")
        first.deregister()
        first.deregister()  # idempotent
        wait_for(sub, lambda e: backend.ids(e) == {"b"}, backend.propagation, "only b")


@requires()
def test_registration_is_idempotent(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        registrar.register()
        registrar.register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        registrar.deregister()
        wait_for(sub, lambda e: not e.instances, backend.propagation, "no instance")
        registrar.register()  # a deregistered registrar may register again
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a again")


@requires()
def test_deregister_and_close_are_idempotent(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    never = backend.registrar(backend.registration("never", 20002))
    never.deregister()  # never registered: nothing to do
    never.close()
    never.close()
    assert _state(never) is RegistrarState.CLOSED

    registrar = backend.registrar(backend.registration("a", 20001))
    instancer = backend.instancer()
    latest = Latest(instancer)
    registrar.register()
    latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    registrar.deregister()
    registrar.deregister()
    assert _state(registrar) is RegistrarState.IDLE
    latest.wait(lambda e: e.ok and not e.instances, backend.propagation, "no instance")
    registrar.close()
    registrar.close()
    assert _state(registrar) is RegistrarState.CLOSED
    latest.close()
    latest.close()  # deregistering a subscriber twice is harmless
    instancer.stop()
    instancer.stop()


@requires()
def test_subscriber_gets_the_current_state_at_once(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    backend.registrar(backend.registration("a", 20001)).register()
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        received: list[Event] = []
        instancer.register(received.append)
        # Delivered inside register(): no waiting.
        assert [backend.ids(e) for e in received] == [{"a"}]
        instancer.deregister(received.append)


@requires()
def test_an_empty_service_is_an_empty_set_not_an_error(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: True, backend.propagation, "a first event")
    assert event.ok
    assert event.instances == ()


@requires()
def test_a_service_that_does_not_exist_yet_then_appears(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        first = latest.wait(lambda e: True, backend.propagation, "a first event")
        assert first.ok, f"a service nobody registered yet is not an error: {first!r}"
        assert first.instances == ()
        # Keep watching the absent service for a while: it stays an empty set.
        time.sleep(min(backend.ttl, 2.0))
        assert all(e.ok and not e.instances for e in latest.events), latest.events
        backend.registrar(backend.registration("late", 20001)).register()
        event = latest.wait(lambda e: backend.ids(e) == {"late"}, backend.propagation, "it")
        assert event.ok
        latest.close()


@requires()
def test_identical_states_are_not_sent_again(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        registrar.register()
        wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        registrar.register()
        # Over a whole TTL the registration is renewed several times; nothing changes.
        with pytest.raises(TimeoutError):
            sub.get(timeout=backend.ttl)


@requires()
def test_changes_elsewhere_and_renewals_send_nothing(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    other = backend.registration("x", 20009, service=f"{backend.service}-other")
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        backend.registrar(backend.registration("a", 20001)).register()
        latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        # Every event is counted (a callback, nothing coalesced). From here on the set stays
        # {a}: renewals, and another service coming and going, must send nothing.
        since = latest.mark()
        elsewhere = backend.registrar(other)
        elsewhere.register()
        time.sleep(backend.ttl / 2)
        elsewhere.deregister()
        time.sleep(max(backend.ttl, backend.propagation / 2))
        sent = latest.events[since:]
        latest.close()
    assert sent == [], f"identical sets were sent again: {sent!r}"


@requires()
def test_services_are_kept_apart(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    other = backend.registration("b", 20002, service=f"{backend.service}-other")
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
        mine.deregister(current.append)


@requires()
def test_stop_ends_the_subscription(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    instancer = backend.instancer()
    sub = instancer.subscribe()
    wait_for(sub, lambda e: True, backend.propagation, "a first event")
    instancer.stop()
    with pytest.raises(StopIteration):
        sub.get(timeout=backend.propagation)
    assert sub.closed


@requires()
def test_a_registrar_context_manager_deregisters_on_exit(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        with backend.registrar(backend.registration("a", 20001)) as registrar:
            wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
            assert registrar.registration.id == backend.instance_id("a")
        wait_for(sub, lambda e: not e.instances, backend.propagation, "no instance")


@requires()
def test_a_registrar_async_context_manager_deregisters_on_exit(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend

    async def check() -> None:
        with backend.instancer() as instancer, instancer.subscribe() as sub:
            async with backend.registrar(backend.registration("a", 20001)):
                await wait_for_async(
                    sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "a"
                )
            await wait_for_async(sub, lambda e: not e.instances, backend.propagation, "none")

    # Its own event loop: the suite needs no async pytest plugin.
    asyncio.run(check())


@requires("process_death")
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_process_disappears_within_its_ttl(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    reg = backend.registration("doomed", 20001)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        child = backend.spawn_registrar(reg)
        wait_for(sub, lambda e: backend.ids(e) == {"doomed"}, backend.propagation, "the child")
        child.kill()
        limit = reg.ttl + backend.conformance.death_margin
        wait_for(sub, lambda e: not e.instances, limit, "the killed child gone")


# -- what survives the round trip ----------------------------------------------------------
def _round_trip(backend: BackendUnderTest, **fields: Any) -> sd_core.Instance:
    reg = backend.registration("a", 20001, **fields)
    with backend.instancer() as instancer, instancer.subscribe() as sub:
        backend.registrar(reg).register()
        event = wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    (instance,) = event.instances
    return instance


@requires("tags")
def test_tags_survive_the_round_trip(sd_conformance_backend: BackendUnderTest) -> None:
    tags = frozenset({"prod", "v2", "ünïcode"})
    assert _round_trip(sd_conformance_backend, tags=tags).tags == tags


@requires("meta")
def test_metadata_survives_the_round_trip(sd_conformance_backend: BackendUnderTest) -> None:
    meta = {"version": "1.4.2", "region": "eu-west", "note": "spaces and ünïcode"}
    assert dict(_round_trip(sd_conformance_backend, meta=meta).meta) == meta


@requires("weight")
def test_weight_survives_the_round_trip(sd_conformance_backend: BackendUnderTest) -> None:
    assert _round_trip(sd_conformance_backend, weight=7).weight == 7


@requires("zone")
def test_zone_survives_the_round_trip(sd_conformance_backend: BackendUnderTest) -> None:
    assert _round_trip(sd_conformance_backend, zone="zone-b").zone == "zone-b"


# -- health ------------------------------------------------------------------------------
@requires("set_status")
def test_set_status_hides_and_shows_the_instance(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    conformance = backend.conformance
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        registrar = backend.registrar(backend.registration("a", 20001))
        backend.registrar(backend.registration("b", 20002)).register()
        registrar.register()
        latest.wait(lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b")
        registrar.set_status(conformance.down_status, "conformance: down")
        latest.wait(lambda e: backend.ids(e) == {"b"}, backend.propagation, "a hidden")
        # Renewals must not undo the status.
        time.sleep(backend.ttl)
        assert backend.ids(latest.events[-1]) == {"b"}, latest.events[-1]
        registrar.set_status(conformance.up_status, "conformance: up")
        latest.wait(lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a back")
        latest.close()


# -- faults --------------------------------------------------------------------------------
@requires("restart")
def test_a_failed_deregistration_stays_pending_until_close(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    # A TTL far longer than the check, so that only the deregistration can remove it.
    long_ttl = max(30.0, 6 * (backend.conformance.recovery + backend.propagation))
    registrar = backend.registrar(backend.registration("a", 20001, ttl=long_ttl))
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        registrar.register()
        latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        backend.stop_server()
        with pytest.raises(SDError):
            registrar.deregister()
        assert _state(registrar) is RegistrarState.DEREGISTERING
        with pytest.raises(SDError):
            registrar.close()  # still down: still pending, nothing released
        assert _state(registrar) is RegistrarState.DEREGISTERING
        backend.start_server()
        bound = backend.conformance.recovery + backend.propagation
        latest.wait(lambda e: e.ok, bound, "the backend answering again")
        assert _state(registrar) is RegistrarState.DEREGISTERING
        registrar.close()  # the pending deregistration goes through now
        assert _state(registrar) is RegistrarState.CLOSED
        # Within the propagation bound, far shorter than its TTL: removed by close(), whether
        # the server showed it again after the restart or held it as unhealthy meanwhile.
        latest.wait(lambda e: e.ok and not e.instances, backend.propagation, "the instance removed")
        latest.close()


@requires("restart")
def test_subscribers_converge_after_the_server_is_back(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    conformance = backend.conformance
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        backend.registrar(backend.registration("a", 20001)).register()
        latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        since = latest.mark()
        backend.stop_server()
        bound = conformance.recovery + backend.propagation
        latest.wait_any(lambda e: not e.ok, bound, "an error while the server is down", since=since)
        backend.start_server()
        latest.wait(
            lambda e: e.ok and backend.ids(e) == {"a"},
            conformance.restore_bound + bound,
            "instance a again",
        )
        # The watch is live again: a new change reaches the subscriber.
        backend.registrar(backend.registration("b", 20002)).register()
        latest.wait(lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b")
        latest.close()


@requires("restore")
def test_registration_is_restored_after_the_server_lost_its_state(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    conformance = backend.conformance
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        registrar.register()
        latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        restores = registrar.health.restores
        backend.wipe_server()
        back = time.monotonic()
        bound = conformance.restore_bound
        deadline = back + bound
        while registrar.health.restores == restores and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registrar.health.restores > restores, (
            f"the registration was not restored within {bound:g} s: {registrar.health}"
        )
        latest.wait(
            lambda e: e.ok and backend.ids(e) == {"a"},
            max(0.0, deadline - time.monotonic()) + conformance.recovery + backend.propagation,
            "instance a restored",
        )
        assert registrar.health.healthy, registrar.health
        # Subscribers follow the restored backend: a deregistration reaches them.
        registrar.deregister()
        latest.wait(lambda e: e.ok and not e.instances, backend.propagation, "no instance")
        latest.close()


@requires("pause")
def test_everything_converges_after_the_server_was_frozen(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    backend = sd_conformance_backend
    conformance = backend.conformance
    registrar = backend.registrar(backend.registration("a", 20001))
    with backend.instancer() as instancer:
        latest = Latest(instancer)
        registrar.register()
        latest.wait(lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
        backend.pause_server()
        time.sleep(backend.ttl)
        backend.resume_server()
        bound = conformance.restore_bound + conformance.recovery + backend.propagation
        latest.wait(lambda e: e.ok and backend.ids(e) == {"a"}, bound, "instance a after the thaw")
        deadline = time.monotonic() + conformance.restore_bound
        while not registrar.health.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registrar.health.healthy, registrar.health
        backend.registrar(backend.registration("b", 20002)).register()
        latest.wait(lambda e: backend.ids(e) == {"a", "b"}, backend.propagation, "a and b")
        latest.close()


# -- resources -----------------------------------------------------------------------------
def _open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    folder = Path("/proc/self/fd")
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            fds[int(entry.name)] = os.readlink(entry)
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
    return fds


def _describe_fds(fds: dict[int, str]) -> dict[int, str]:
    """``fds`` with each TCP/UDP socket's addresses, for the failure message."""
    endpoints: dict[str, str] = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                endpoints[fields[9]] = f"{table} {fields[1]} -> {fields[2]} (hex addresses)"
    described = {}
    for fd, target in fds.items():
        inode = target.removeprefix("socket:[").removesuffix("]")
        described[fd] = f"{target} {endpoints[inode]}" if inode in endpoints else target
    return described


def _cycle(backend: BackendUnderTest, instance_id: str) -> None:
    """Everything an application does: watch, subscribe, register, deregister, stop."""
    instancer = backend.instancer()
    sub = instancer.subscribe()
    latest = Latest(instancer)
    registrar = backend.registrar(backend.registration(instance_id, 20001))
    registrar.register()
    wait_for(sub, lambda e: backend.ids(e) == {instance_id}, backend.propagation, "the instance")
    registrar.close()
    latest.wait(lambda e: e.ok and not e.instances, backend.propagation, "no instance")
    latest.close()
    sub.close()
    instancer.stop()


def _settle(
    fds_goal: dict[int, str], threads_goal: set[threading.Thread], timeout: float
) -> tuple[dict[int, str], list[str]]:
    """Wait (at most ``timeout`` s) until no descriptor and no thread is open beyond the
    goal; return the descriptors and the names of the threads still beyond it."""
    deadline = time.monotonic() + timeout
    while True:
        dispatcher().quiesce(1)
        fds = _open_fds()
        new_fds = {fd: target for fd, target in fds.items() if fds_goal.get(fd) != target}
        new_threads = sorted(
            t.name for t in set(threading.enumerate()) - threads_goal if t.is_alive()
        )
        if (not new_fds and not new_threads) or time.monotonic() > deadline:
            return new_fds, new_threads
        time.sleep(0.05)


@requires()
def test_stop_and_close_leave_nothing_behind(sd_conformance_backend: BackendUnderTest) -> None:
    backend = sd_conformance_backend
    settle = max(5.0, backend.conformance.recovery + backend.propagation)
    shared = connections()
    held_elsewhere = shared.count(backend.name)
    fds_start, threads_start = _open_fds(), set(threading.enumerate())
    # A first round may start what a process starts once and keeps (the core's loop,
    # imports, plugin loading): what is still open once it settled is the baseline. The
    # second round must leave nothing of its own behind.
    _cycle(backend, "warm-up")
    _settle(fds_start, threads_start, settle)
    fds_before, threads_before = _open_fds(), set(threading.enumerate())
    _cycle(backend, "measured")
    new_fds, new_threads = _settle(fds_before, threads_before, settle)
    assert shared.count(backend.name) <= held_elsewhere, "a shared client was not released"
    assert new_threads == [], f"threads left behind: {new_threads}"
    if held_elsewhere:
        # Something else in the process (a fixture, an earlier test) holds a client of this
        # backend, which ours may have shared: its pool may keep the sockets we used.
        new_fds = {fd: t for fd, t in new_fds.items() if not t.startswith("socket:")}
    assert new_fds == {}, f"file descriptors left behind: {_describe_fds(new_fds)}"


@requires()
def test_instancers_of_one_service_share_one_watch_and_one_client(
    sd_conformance_backend: BackendUnderTest,
) -> None:
    """Fifty instancers of one service (sections "shared connections" and "watching" of the
    plugin guide): one watch, at most one client, each with its own subscribers."""
    backend = sd_conformance_backend
    shared = connections()
    clients = shared.count(backend.name)
    threads = {t for t in threading.enumerate() if t.name.startswith("sd-")}
    instancers = [backend.instancer() for _ in range(50)]
    try:
        for instancer in (instancers[0], instancers[-1]):
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e: e.ok, backend.propagation, "a first set")
        new = {t.name for t in threading.enumerate() if t.name.startswith("sd-")} - {
            t.name for t in threads
        }
        watching = {name for name in new if not name.startswith("sd-dispatch")}
        assert len(watching) <= 1, f"fifty instancers of one service started {sorted(watching)}"
        assert shared.count(backend.name) <= clients + 1, "more than one client for one watch"
        instancers[0].stop()
        with instancers[1].subscribe() as sub:  # the others go on
            wait_for(sub, lambda e: e.ok, backend.propagation, "a set after one stopped")
    finally:
        for instancer in instancers:
            instancer.stop()
    assert shared.count(backend.name) <= clients


# -- secrets -------------------------------------------------------------------------------
def _printed_forms(secret: str) -> set[str]:
    return {secret, repr(secret)[1:-1]}


def _describe_error(error: BaseException) -> str:
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error))]
        + [repr(arg) for arg in error.args]
    )


@requires("secret")
def test_no_secret_in_reprs_errors_or_logs(
    sd_conformance_backend: BackendUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    backend = sd_conformance_backend
    conformance = backend.conformance
    secret_options = dict(conformance.secret_options)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    registrar = backend.registrar(backend.registration("a", 20001), **secret_options)
    instancer = backend.instancer(**secret_options)
    sub = instancer.subscribe()
    latest = Latest(instancer)
    registrar.register()
    wait_for(sub, lambda e: backend.ids(e) == {"a"}, backend.propagation, "instance a")
    texts += [repr(instancer), str(instancer), repr(registrar), str(registrar), repr(sub)]
    texts += [str(registrar.health), repr(registrar.health), repr(latest.latest)]

    # Errors of option checking name the options, never the secret values.
    for make in (
        lambda: sd_core.instancer(
            backend.name, backend.service, **{**backend.options, **secret_options}, no_such=1
        ),
        lambda: sd_core.registrar(
            backend.name,
            registrar.registration,
            **{**backend.options, **secret_options},
            no_such=1,
        ),
    ):
        with pytest.raises(SDError) as refused:
            make()
        texts.append(_describe_error(refused.value))

    if "restart" in conformance.capabilities:
        # Errors of a backend that cannot be reached, in every form they reach a user.
        since = latest.mark()
        backend.stop_server()
        with pytest.raises(SDError) as failed:
            registrar.deregister()
        texts.append(_describe_error(failed.value))
        bound = conformance.recovery + backend.propagation
        error_event = latest.wait_any(lambda e: not e.ok, bound, "an error", since=since)
        assert error_event.error is not None
        texts += [repr(error_event), _describe_error(error_event.error)]
        last_error = registrar.health.last_error
        assert last_error is not None
        texts += [str(registrar.health), _describe_error(last_error), repr(registrar)]
        backend.start_server()
    registrar.close()
    latest.close()
    sub.close()
    instancer.stop()

    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    texts.append(caplog.text)
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(_describe_error(record.exc_info[1]))
    for option, secret in secret_options.items():
        for form in _printed_forms(secret):
            leaks = [text.replace(form, "<THE SECRET>") for text in texts if form in text]
            assert not leaks, f"the secret of option {option!r} leaked: {leaks[0][:2000]}"
