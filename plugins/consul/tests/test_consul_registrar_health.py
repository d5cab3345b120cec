"""The registrar's own health and its pending deregistration, against real agents."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from consul_helpers import FAST, poll
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import RegistrarHealth, RegistrarState, Registration, RegistrationError


def agent_services(server: ConsulServer) -> dict[str, Any]:
    services: dict[str, Any] = server.api("GET", "/v1/agent/services").json()
    return services


def test_a_failed_deregistration_stays_pending_and_is_retried(
    consul_server: ConsulServer, sd_namespace: str
) -> None:
    registration = Registration(sd_namespace, "127.0.0.1", 20401, id=f"{sd_namespace}-a", ttl=5)
    options = {"address": consul_server.address, "timeout": 1.0}
    registrar = sd_core.registrar("consul", registration, **options)
    registrar.register()
    assert registration.id in agent_services(consul_server)
    consul_server.stop()
    try:
        with pytest.raises(RegistrationError):
            registrar.deregister()
        assert registrar.health.state is RegistrarState.DEREGISTERING
        failures = registrar.health.failures
        with pytest.raises(RegistrationError):  # tried again, not forgotten
            registrar.close()
        assert registrar.health.failures == failures + 1
        assert registrar.health.state is RegistrarState.DEREGISTERING
    finally:
        consul_server.start()
    # The agent kept the service in its state across the restart; the next call removes it.
    assert registration.id in agent_services(consul_server)
    registrar.close()
    assert registrar.health.state is RegistrarState.CLOSED
    assert registration.id not in agent_services(consul_server)


def make_policy(server: ConsulServer, rules: str) -> str:
    name = f"sd-test-{uuid.uuid4().hex[:8]}"
    policy = server.api("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    assert policy.status == 200, policy
    return name


def make_token(server: ConsulServer, policy: str, **ids: str) -> tuple[str, str]:
    """A token holding ``policy`` (with the given AccessorID/SecretID, if any):
    (accessor id, secret id)."""
    token = server.api("PUT", "/v1/acl/token", {"Policies": [{"Name": policy}], **ids})
    assert token.status == 200, token
    body = token.json()
    return body["AccessorID"], body["SecretID"]


def test_a_revoked_token_shows_in_the_registrars_health(
    consul_acl_server: ConsulServer, sd_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = make_policy(consul_acl_server, f'service "{sd_namespace}" {{ policy = "write" }}')
    accessor, token = make_token(consul_acl_server, policy)
    ttl = 1.5
    registration = Registration(sd_namespace, "127.0.0.1", 20402, id=f"{sd_namespace}-a", ttl=ttl)
    registrar = sd_core.registrar(
        "consul", registration, token=token, address=consul_acl_server.address, **FAST
    )
    seen: list[RegistrarHealth] = []
    failing = threading.Event()

    def listener(health: RegistrarHealth) -> None:
        seen.append(health)
        if health.state is RegistrarState.FAILING:
            failing.set()

    stop_listening = registrar.on_health_change(listener)
    try:
        registrar.register()
        assert registrar.health.state is RegistrarState.REGISTERED
        assert registrar.health.healthy
        deleted = consul_acl_server.api("DELETE", f"/v1/acl/token/{accessor}")
        assert deleted.status == 200, deleted
        assert failing.wait(ttl * 3 + 5), f"health never became failing: {seen}"
        states = [h.state for h in seen]
        assert states.index(RegistrarState.RENEWING) < states.index(RegistrarState.FAILING)
        health = registrar.health
        assert not health.healthy
        assert health.failures >= 2
        assert isinstance(health.last_error, RegistrationError)
        assert "ACL" in str(health.last_error)
        assert registrar.registered  # it still tries: a new token may be put in place
        shown = [str(health), repr(health), repr(registrar), caplog.text]
        shown += [str(h) for h in seen]
        assert not [text for text in shown if token in text]
        # The same token put back: the registrar recovers by itself.
        make_token(consul_acl_server, policy, AccessorID=accessor, SecretID=token)
        poll(lambda: registrar.health.healthy, ttl * 3 + 5, "healthy again")
        assert registrar.health.failures == 0
    finally:
        stop_listening()
        registrar.close()


async def test_health_changes_can_be_followed_from_asyncio(
    consul_server: ConsulServer, sd_namespace: str
) -> None:
    registration = Registration(sd_namespace, "127.0.0.1", 20403, id=f"{sd_namespace}-a", ttl=1.5)
    registrar = sd_core.registrar(
        "consul", registration, address=consul_server.address, timeout=1.0
    )
    async with registrar.health_changes() as changes:
        assert (await changes.get_async(1)).state is RegistrarState.IDLE
        await registrar.aregister()
        assert (await changes.get_async(5)).state is RegistrarState.REGISTERED
        consul_server.pause()
        try:
            while (health := await changes.get_async(10)).healthy:
                pass
            assert health.state is RegistrarState.FAILING
        finally:
            consul_server.resume()
        while not (health := await changes.get_async(10)).healthy:
            pass
        assert health.state is RegistrarState.REGISTERED
        await registrar.aclose()
        states = []
        async for health in changes:
            states.append(health.state)
        assert states[-1] is RegistrarState.CLOSED
    assert registration.id not in agent_services(consul_server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("verb", ["register", "run"])
def test_sd_register_and_run_show_the_registrations_health(
    consul_server: ConsulServer, sd_namespace: str, verb: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SD_", "CONSUL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    command = [sys.executable, "-m", "sd_core.cli", verb]
    command += [f"consul://{consul_server.address}/{sd_namespace}", "--port", str(port)]
    command += ["--ttl", "3", "-o", "timeout=1"]
    if verb == "run":
        command += ["--", sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])  # type: ignore[union-attr]
    reader.start()

    def wait_for_line(text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"sd register never printed {text!r}")

    try:
        wait_for_line("registered ")
        assert sd_namespace in str(agent_services(consul_server))
        consul_server.pause()
        try:
            line = wait_for_line(": failing")
        finally:
            consul_server.resume()
        assert sd_namespace in line
        wait_for_line(": registered")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        reader.join(20)
