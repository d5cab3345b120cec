"""Faults: the agent killed and wiped, paused mid-query; a registrant whose TTL lapses."""

from __future__ import annotations

import time

from consul_helpers import FAST, MakeInstancer, MakeRegistrar, ids, poll, wait_for
from pytest_sd import RegisteringChild
from pytest_sd.consul import ConsulServer

from sd_core import Registration


def test_registration_restored_after_the_agent_is_killed_and_wiped(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    ttl = 2.0
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20101, id="a", ttl=ttl))
    registrar.register()
    instancer = make_instancer(sd_namespace)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
        consul_server.kill()
        wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
        consul_server.start(wipe=True)
        back = time.monotonic()
        wait_for(sub, lambda e: ids(e) == {"a"}, 2 * ttl, "instance a restored")
    assert time.monotonic() - back <= 2 * ttl
    # The registrar counts the restore once its PUT has returned, which a subscriber may beat.
    poll(lambda: registrar.restores >= 1, 2.0, "the restore counted")


def test_lapsed_ttl_drops_out_and_comes_back_when_the_keepalive_resumes(
    consul_server: ConsulServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    ttl = 1.5
    child = RegisteringChild(
        "consul",
        Registration(sd_namespace, "127.0.0.1", 20102, id="child", ttl=ttl),
        {"address": consul_server.address, "timeout": 2.0},
    )
    try:
        with make_instancer(sd_namespace).subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"child"}, 3.0, "the child's instance")
            child.pause()  # SIGSTOP: its keepalive stops, its TTL check lapses
            paused = time.monotonic()
            wait_for(sub, lambda e: e.ok and not e.instances, ttl + 3.0, "the child gone")
            assert time.monotonic() - paused >= ttl * 0.9
            child.resume()
            wait_for(sub, lambda e: ids(e) == {"child"}, ttl + 2.0, "the child back")
    finally:
        child.close()
    with make_instancer(sd_namespace, passing=False).subscribe() as sub:
        wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "the child deregistered")


def test_paused_agent_gives_an_error_and_recovery_loses_no_update(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    make_registrar(Registration(sd_namespace, "127.0.0.1", 20103, id="a", ttl=5.0)).register()
    instancer = make_instancer(sd_namespace)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
        time.sleep(0.2)  # inside a blocking query
        consul_server.pause()
        paused = time.monotonic()
        try:
            # The read timeout is timeout + wait + wait/16 for a blocking query.
            limit = FAST["timeout"] + FAST["wait"] * (1 + 1 / 16) + 1.0
            event = wait_for(sub, lambda e: not e.ok, limit, "an error event")
            assert "no answer within the timeout" in str(event.error)
            assert time.monotonic() - paused >= FAST["timeout"] * 0.9
        finally:
            consul_server.resume()
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a again")
        # A change right after the agent came back is seen.
        make_registrar(Registration(sd_namespace, "127.0.0.1", 20104, id="b", ttl=5.0)).register()
        wait_for(sub, lambda e: ids(e) == {"a", "b"}, 3.0, "a and b")


def test_agent_down_is_an_error_event_with_backoff_not_a_busy_loop(
    consul_server: ConsulServer, sd_namespace: str, make_instancer: MakeInstancer
) -> None:
    consul_server.stop()
    instancer = make_instancer(sd_namespace, retry_max=1.0)
    cpu = time.process_time()
    with instancer.subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert "cannot reach the agent" in str(event.error)
        time.sleep(2.0)
        assert time.process_time() - cpu < 0.5
        consul_server.start()
        wait_for(sub, lambda e: e.ok, 5.0, "a set once the agent is back")


def test_keepalive_survives_an_agent_restart_that_keeps_state(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    registrar = make_registrar(Registration(sd_namespace, "127.0.0.1", 20105, id="a", ttl=2.0))
    registrar.register()
    consul_server.restart()
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, 5.0, "instance a after the restart")
    poll(lambda: registrar.registered, 1.0, "still registered")
