"""The agent's per-client connection limit (``limits.http_max_conns_per_client``).

Consul 1.8.7 counts the HTTP connections of each client IP address; over the limit it accepts
a new connection and closes it at once, without answering (the client sees the connection
closed or reset). A closed connection stops counting only when the agent's handler returns:
for a blocking query, when its wait ends, even though the client closed it long before.
These tests run an agent of their own with a limit of 8.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from consul_helpers import wait_for
from pytest_sd._binaries import BackendNotInstalled
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import BackendUnavailableError, Registration, RegistrationError

LIMIT = 8
MESSAGE = r"this host has too many connections open to it .*limits\.http_max_conns_per_client"


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulServer]:
    try:
        server = ConsulServer(
            tmp_path_factory.mktemp("consul-limited"),
            name="consul-limited",
            http_max_conns_per_client=LIMIT,
        )
    except BackendNotInstalled as exc:  # as sd_core's fixtures do: skip, but fail in CI
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def held_connection(server: ConsulServer) -> socket.socket:
    """A connection the agent counts: it answered one request on it, which stays open."""
    sock = socket.create_connection((server.host, server.http_port), timeout=5.0)
    sock.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: consul\r\n\r\n")
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return sock


def refused(server: ConsulServer) -> bool:
    """The agent closes a new connection at once, before it is sent anything."""
    with socket.create_connection((server.host, server.http_port), timeout=5.0) as sock:
        sock.settimeout(2.0)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def hold_every_connection(server: ConsulServer, timeout: float = 15.0) -> list[socket.socket]:
    """``LIMIT`` connections the agent counts, returned open: proof that it counts no other of
    ours (an earlier test's blocking queries are counted until their wait ends)."""
    deadline = time.monotonic() + timeout
    while True:
        held: list[socket.socket] = []
        try:
            for _ in range(LIMIT):
                held.append(held_connection(server))
        except (AssertionError, OSError):
            for sock in held:
                sock.close()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the agent still counts connections after {timeout:g} s"
                ) from None
            time.sleep(0.2)
        else:
            return held


def try_register(registrar: sd_core.Registrar) -> RegistrationError | None:
    try:
        registrar.register()
    except RegistrationError as exc:
        return exc
    return None


def register_once_a_slot_frees(registrar: sd_core.Registrar, timeout: float) -> None:
    """``register()``, again while it fails: a connection closed by the client is counted
    free once the agent has seen it close, a moment later."""
    deadline = time.monotonic() + timeout
    while (error := try_register(registrar)) is not None:
        assert time.monotonic() < deadline, f"still failing after {timeout:g} s: {error}"
        time.sleep(0.05)


def test_over_the_limit_calls_fail_saying_so_and_recover(
    limited_server: ConsulServer, sd_namespace: str
) -> None:
    options = {"address": limited_server.address, "timeout": 2.0}
    keeper = sd_core.registrar(
        "consul", Registration(sd_namespace, "127.0.0.1", 21400, id="keeper", ttl=30), **options
    )
    # Other connection options: a client of their own, which must open a new connection (with
    # the same options they would share the keeper's client and its open connection).
    newcomer = sd_core.registrar(
        "consul",
        Registration(sd_namespace, "127.0.0.1", 21401, id="newcomer", ttl=30),
        **{**options, "timeout": 2.1},
    )
    held = hold_every_connection(limited_server)
    instancer = None
    try:
        # Registered as the host reaches the limit: its connection stays open and counted.
        held.pop().close()
        register_once_a_slot_frees(keeper, 5.0)
        assert refused(limited_server)
        with pytest.raises(RegistrationError, match=MESSAGE) as info:
            newcomer.register()
        assert "cannot reach" not in str(info.value)
        instancer = sd_core.instancer(
            "consul", sd_namespace, wait=1.0, retry_max=0.5, **{**options, "timeout": 2.2}
        )
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 5.0, "an error event")
            assert isinstance(event.error, BackendUnavailableError)
            assert "too many connections open to it" in str(event.error)
            # The registration made before keeps being renewed, on its open connection.
            assert keeper._backend_keepalive() is True  # type: ignore[attr-defined]
            for sock in held:
                sock.close()
            held.clear()
            event = wait_for(sub, lambda e: e.ok, 5.0, "a set once connections are free")
            assert {i.port for i in event.instances} == {21400}
        register_once_a_slot_frees(newcomer, 5.0)
        owner = newcomer.client.service_owner("newcomer")  # type: ignore[attr-defined]
        assert owner.name == sd_namespace
    finally:
        for sock in held:
            sock.close()
        if instancer is not None:
            instancer.stop()
        newcomer.close()
        keeper.close()


def test_a_stopped_instancer_holds_its_connection_until_its_wait_ends(
    limited_server: ConsulServer, sd_namespace: str
) -> None:
    """What Consul 1.8 does, and that the registrar reports it as the limit meanwhile."""
    wait = 6.0
    options = {"address": limited_server.address, "timeout": 2.0}
    for sock in hold_every_connection(limited_server):
        sock.close()
    instancers = [
        sd_core.instancer("consul", f"{sd_namespace}-{n}", wait=wait, retry_max=0.5, **options)
        for n in range(LIMIT)
    ]
    # Its own client (other options): one sharing the instancers' could reuse a connection
    # of theirs still open at the agent.
    registrar = sd_core.registrar(
        "consul",
        Registration(sd_namespace, "127.0.0.1", 21402, id="late", ttl=30),
        **{**options, "timeout": 2.1},
    )
    try:
        answered: list[float] = []
        for instancer in instancers:
            with instancer.subscribe() as sub:  # answered: now in its blocking query
                wait_for(sub, lambda e: e.ok, 10.0, "a first set")
            answered.append(time.monotonic())
        for instancer in instancers:
            instancer.stop()  # the client closes its connection at once...
        # ... and the agent still counts it: the blocking query runs until its wait ends.
        if time.monotonic() < answered[0] + wait - 1.0:  # else too slow a machine to tell
            with pytest.raises(RegistrationError, match=MESSAGE):
                registrar.register()
        register_once_a_slot_frees(
            registrar, answered[-1] + wait * (1 + 1 / 16) + 5.0 - time.monotonic()
        )
        # Checked on the registrar's own connection: others may still be held at the agent.
        owner = registrar.client.service_owner("late")  # type: ignore[attr-defined]
        assert owner.name == sd_namespace
    finally:
        for instancer in instancers:
            instancer.stop()
        registrar.close()
