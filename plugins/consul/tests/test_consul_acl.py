"""Default-deny ACLs: the token is sent on every call and never shown."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable
from typing import IO, Any

import pytest
from consul_helpers import FAST, ids, poll, wait_for
from pytest_sd.consul import ConsulServer
from sd_consul import ConsulBackend

import sd_core
from sd_core import ConfigError, Registration, RegistrationError


def make_token(server: ConsulServer, rules: str) -> str:
    """A token holding one policy with ``rules``; returns its secret."""
    name = f"sd-test-{uuid.uuid4().hex[:8]}"
    policy = server.api("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    assert policy.status == 200, policy
    token = server.api("PUT", "/v1/acl/token", {"Policies": [{"Name": name}]})
    assert token.status == 200, token
    secret: str = token.json()["SecretID"]
    return secret


@pytest.fixture
def acl_options(consul_acl_server: ConsulServer) -> dict[str, Any]:
    return {"address": consul_acl_server.address, **FAST}


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


def test_a_token_that_allows_it_registers_discovers_and_keeps_alive(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = make_token(
        consul_acl_server,
        f'service "{sd_namespace}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}',
    )
    registration = Registration(sd_namespace, "127.0.0.1", 20201, id="a", ttl=1.0)
    registrar = sd_core.registrar("consul", registration, token=token, **acl_options)
    instancer = sd_core.instancer("consul", sd_namespace, token=token, **acl_options)
    try:
        with instancer.subscribe() as sub:
            registrar.register()
            wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
            # Several TTL periods: the TTL passes carry the token, so a stays passing.
            time.sleep(2.5)
            state = instancer.state
            assert state is not None
            assert ids(state) == {"a"}
            registrar.set_status("critical", "testing")
            wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "a critical")
            registrar.set_status("passing")
            wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "a passing")
            registrar.deregister()  # carries the token too
            wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "a deregistered")
        shown = [repr(registrar), repr(instancer), everything_logged(caplog)]
        assert not [text for text in shown if token in text]
    finally:
        registrar.close()
        instancer.stop()
    services = consul_acl_server.api("GET", "/v1/agent/services").json()
    assert "a" not in services


def test_without_a_token_registration_fails_naming_the_permission(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    registration = Registration(sd_namespace, "127.0.0.1", 20202, id="a", ttl=2.0)
    registrar = sd_core.registrar("consul", registration, **acl_options)
    try:
        with pytest.raises(RegistrationError, match=r"service:write") as info:
            registrar.register()
    finally:
        registrar.close()
    assert "permission denied" in str(info.value).lower()
    assert "no ACL token was given" in str(info.value)


def test_a_token_for_another_service_is_refused_and_never_shown(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = make_token(consul_acl_server, 'service "someone-else" { policy = "write" }')
    registration = Registration(sd_namespace, "127.0.0.1", 20203, id="a", ttl=2.0)
    registrar = sd_core.registrar("consul", registration, token=token, **acl_options)
    try:
        with pytest.raises(RegistrationError, match=rf"service:write.*{sd_namespace}") as info:
            registrar.register()
    finally:
        registrar.close()
    chain = [info.value, info.value.__cause__]
    shown = [*map(str, chain), repr(registrar), everything_logged(caplog)]
    assert not [text for text in shown if token in text]


def test_discovery_without_a_token_is_an_error_event(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    registration = Registration(sd_namespace, "127.0.0.1", 20204, id="a", ttl=5.0)
    registrar = sd_core.registrar(
        "consul", registration, token=consul_acl_server.token, **acl_options
    )
    instancer = sd_core.instancer("consul", sd_namespace, **acl_options)
    try:
        registrar.register()
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert isinstance(event.error, ConfigError)
        assert "service:read" in str(event.error)
    finally:
        instancer.stop()
        registrar.close()


def test_discovery_with_an_unknown_token_is_an_error_event_without_the_token(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = str(uuid.uuid4())
    instancer = sd_core.instancer("consul", sd_namespace, token=token, **acl_options)
    try:
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, 3.0, "an error event")
        assert "does not know the ACL token" in str(event.error)
    finally:
        instancer.stop()
    shown = [str(event.error), repr(event), repr(instancer), everything_logged(caplog)]
    assert not [text for text in shown if token in text]


def test_token_from_consul_http_token(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert consul_acl_server.token is not None
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", consul_acl_server.token)
    registration = Registration(sd_namespace, "127.0.0.1", 20205, id="a", ttl=5.0)
    with sd_core.registrar("consul", registration, **acl_options):
        instancer = sd_core.instancer("consul", sd_namespace, **acl_options)
        try:
            with instancer.subscribe() as sub:
                wait_for(sub, lambda e: ids(e) == {"a"}, 3.0, "instance a")
        finally:
            instancer.stop()


# -- secrets: a token with surrounding whitespace works; one that cannot be sent is refused,
# and no form of it is ever shown ------------------------------------------------------------


def write_token(server: ConsulServer, service: str) -> tuple[str, str, str]:
    """A token that may register and discover ``service``: (AccessorID, SecretID, the name
    of its policy)."""
    name = f"sd-test-{uuid.uuid4().hex[:8]}"
    rules = f'service "{service}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}'
    assert server.api("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}).status == 200
    token = server.api("PUT", "/v1/acl/token", {"Policies": [{"Name": name}]})
    assert token.status == 200, token
    return token.json()["AccessorID"], token.json()["SecretID"], name


def forms(secret: str) -> list[str]:
    """How a secret can be printed: raw, escaped as repr and JSON do, URL-quoted; and for a
    secret cut by a control character, each part on its own."""
    shown = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    shown.update(part for part in re.split(r"[\x00-\x1f\x7f]", secret) if len(part) >= 8)
    return sorted(shown)


def shows(texts: list[str], secret: str) -> list[str]:
    """The forms of ``secret`` found in ``texts``."""
    return [form for form in forms(secret) if any(form in text for text in texts)]


def error_texts(error: BaseException) -> list[str]:
    """str and repr of an error and of everything chained to it, and its formatted traceback."""
    texts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        for link in (current.__cause__, current.__context__):
            if link is not None:
                texts += [str(link), repr(link)]
        current = current.__cause__ or current.__context__
    return texts


def connections_opened(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Starting new HTTP" in r.getMessage()]


@pytest.mark.parametrize("given_as", ["keyword", "url", "env", "backend"])
def test_a_token_with_a_trailing_newline_works_and_is_never_shown(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    given_as: str,
) -> None:
    """As read from a file: ``$(cat token)`` keeps no newline, ``open().read()`` does."""
    caplog.set_level(logging.DEBUG)
    _, secret, _ = write_token(consul_acl_server, sd_namespace)
    given = secret + "\n"
    address = consul_acl_server.address
    registration = Registration(sd_namespace, "127.0.0.1", 20206, ttl=1.0)
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    if given_as == "keyword":
        registrar = sd_core.registrar("consul", registration, address=address, token=given)
        instancer = sd_core.instancer("consul", sd_namespace, address=address, token=given, **FAST)
    elif given_as == "url":
        query = f"token={urllib.parse.quote(given)}"
        assert query.endswith("%0A")
        registrar = sd_core.registrar(f"consul://{address}?{query}", registration)
        instancer = sd_core.instancer(f"consul://{address}/{sd_namespace}?{query}", **FAST)
    elif given_as == "env":
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", given)
        registrar = sd_core.registrar("consul", registration, address=address)
        instancer = sd_core.instancer("consul", sd_namespace, address=address, **FAST)
    else:  # straight to the backend, past the core's option resolution
        backend = ConsulBackend()
        registrar = backend.registrar(registration, address=address, token=given)
        instancer = backend.instancer(sd_namespace, address=address, token=given, **FAST)
    try:
        with instancer.subscribe() as sub:
            registrar.register()
            event = wait_for(sub, lambda e: len(e.instances) == 1, 3.0, "the instance")
            assert event.instances[0].address == "127.0.0.1:20206"
            registrar.set_status("warning", "slow")  # TTL update: carries the token too
            wait_for(sub, lambda e: e.ok and not e.instances, 3.0, "not passing")
            registrar.deregister()
        client = registrar.client  # type: ignore[attr-defined]
        shown = [
            repr(registrar),
            repr(instancer),
            repr(client),
            repr(client.connection),
            everything_logged(caplog),
        ]
        assert shows(shown, given) == []
    finally:
        registrar.close()
        instancer.stop()


def test_a_token_with_a_newline_inside_is_refused_before_any_request(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, secret, _ = write_token(consul_acl_server, sd_namespace)
    broken = f"{secret[:18]}\n{secret[18:]}"
    address = consul_acl_server.address
    registration = Registration(sd_namespace, "127.0.0.1", 20207, ttl=5.0)
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    quoted = urllib.parse.quote(broken)
    attempts: list[Callable[[], object]] = [
        lambda: sd_core.registrar("consul", registration, address=address, token=broken),
        lambda: sd_core.instancer("consul", sd_namespace, address=address, token=broken),
        lambda: sd_core.registrar(f"consul://{address}?token={quoted}", registration),
        lambda: sd_core.instancer(f"consul://{address}/{sd_namespace}?token={quoted}"),
        # Straight to the backend, past the core's option resolution:
        lambda: ConsulBackend().registrar(registration, address=address, token=broken),
        lambda: ConsulBackend().instancer(sd_namespace, address=address, token=broken),
    ]
    errors: list[ConfigError] = []
    for attempt in attempts:
        with pytest.raises(ConfigError, match=r"'token' holds a control character") as info:
            attempt()
        errors.append(info.value)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", broken)
    for attempt in (
        lambda: sd_core.registrar("consul", registration, address=address),
        lambda: sd_core.instancer("consul", sd_namespace, address=address),
    ):
        with pytest.raises(ConfigError, match=r"'token' .*control character") as info:
            attempt()
        errors.append(info.value)
    assert connections_opened(caplog) == []
    texts = [text for error in errors for text in error_texts(error)]
    assert shows([*texts, everything_logged(caplog)], broken) == []


def test_a_revoked_token_is_never_shown_by_the_registrar(
    consul_acl_server: ConsulServer,
    sd_namespace: str,
    acl_options: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    accessor, secret, policy = write_token(consul_acl_server, sd_namespace)
    registration = Registration(sd_namespace, "127.0.0.1", 20208, ttl=1.0)
    options = {k: v for k, v in acl_options.items() if k not in ("wait", "retry_max")}
    registrar = sd_core.registrar("consul", registration, token=secret + "\n", **options)
    registrar.register()
    revoked = consul_acl_server.api("DELETE", f"/v1/acl/token/{accessor}")
    assert revoked.status == 200, revoked
    try:
        # The keepalive (every ttl/3) now fails; its failures are logged.
        poll(
            lambda: "does not know the ACL token" in everything_logged(caplog),
            5.0,
            "a failed keepalive logged",
        )
        with pytest.raises(RegistrationError, match="does not know the ACL token") as info:
            registrar.deregister()
        texts = [*error_texts(info.value), repr(registrar), everything_logged(caplog)]
        assert shows(texts, secret) == []
    finally:
        # The same secret again, so that the pending deregistration can complete.
        again = consul_acl_server.api(
            "PUT", "/v1/acl/token", {"SecretID": secret, "Policies": [{"Name": policy}]}
        )
        assert again.status == 200, again
        registrar.close()
    services = consul_acl_server.api("GET", "/v1/agent/services").json().values()
    assert all(service["Service"] != sd_namespace for service in services)


# -- the sd command, for real ---------------------------------------------------------------

SD = [sys.executable, "-m", "sd_core.cli"]


class SdProcess:
    """``sd -vv ...`` in a subprocess with the token in its environment; output collected."""

    def __init__(self, *args: str, token: str) -> None:
        env = {**os.environ, "CONSUL_HTTP_TOKEN": token}
        self.popen = subprocess.Popen(
            [*SD, "-vv", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)
            if into is self.stdout:
                self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if text in self.lines.get(timeout=remaining):
                    return
            except queue.Empty:
                break
        self.popen.kill()
        _, _, err = self.finish()
        raise AssertionError(f"no line with {text!r} within {timeout:g} s: {err}")

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Exit status, stdout and stderr, once it exited."""
        status = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return status, "".join(self.stdout), "".join(self.stderr)


def test_the_sd_command_with_a_token_in_its_environment(
    consul_acl_server: ConsulServer, sd_namespace: str
) -> None:
    _, secret, _ = write_token(consul_acl_server, sd_namespace)
    url = f"consul://{consul_acl_server.address}/{sd_namespace}"
    outputs: list[str] = []

    # A token read from a file, newline included: sd register and sd resolve work.
    register = SdProcess("register", url, "--port", "20209", "--ttl", "5", token=secret + "\n")
    try:
        register.wait_for_line("registered", 30.0)
        resolve = SdProcess("resolve", url, "--json", "--timeout", "10", token=secret + "\n")
        status, out, err = resolve.finish()
        outputs += [out, err]
        assert status == 0, err
        assert json.loads(out)["instances"][0]["port"] == 20209
    finally:
        register.popen.send_signal(signal.SIGTERM)
        status, out, err = register.finish()
        outputs += [out, err]
    assert status == 0, err
    assert "deregistered" in out

    # A newline inside: refused, before any request.
    broken = f"{secret[:18]}\n{secret[18:]}"
    for args in (("resolve", url), ("register", url, "--port", "20210")):
        status, out, err = SdProcess(*args, token=broken).finish()
        outputs += [out, err]
        assert status == 1
        assert "'token' holds a control character" in err
        assert "Starting new HTTP" not in err

    # A token Consul does not know.
    unknown = str(uuid.uuid4())
    status, out, err = SdProcess("register", url, "--port", "20211", token=unknown).finish()
    outputs += [out, err]
    assert status == 1
    assert "does not know the ACL token" in err

    assert shows(outputs, secret + "\n") == []
    assert shows(outputs, broken) == []
    assert shows(outputs, unknown) == []
