"""Secrets: stripped or refused before use, and scrubbed in every printed form, by the core."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from pytest_sd import wait_for_event

import sd_core
import sd_core.plugin
from sd_core import ConfigError, Registration, RegistrationError
from sd_core import _plugins as plugins
from sd_core._plugins import PluginManager
from sd_core._secrets import REDACTED, scrub, scrub_error
from sd_core.plugin import BaseRegistrar, Option, WatchContext, WatchInstancer

TOKEN = "9f3c1d2e-secret-token-of-the-test"


class LeakyError(Exception):
    """What an HTTP library raises for a header value it refuses: the value in repr form."""


def refuse(token: str) -> None:
    try:
        raise ValueError(f"Invalid return character or leading space in header: {token!r}")
    except ValueError as inner:
        raise LeakyError(f"request failed: {inner} (token {token!r})") from inner


class LeakyRegistrar(BaseRegistrar):
    backend_name = "leaky"

    def __init__(self, registration: Registration, token: str) -> None:
        super().__init__(registration)
        self.token = token

    def _backend_register(self) -> None:
        refuse(self.token + "\n")

    def _backend_deregister(self) -> None:
        pass


class LeakyBackend:
    name = "leaky"
    description = "its client library puts the token in its errors"
    options = (Option("token", str, secret=True, env="SD_LEAKY_TOKEN"),)
    supports_discovery = True
    supports_registration = True

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def instancer(self, service: str, **options: Any) -> WatchInstancer:
        token = options["token"]
        self.tokens.append(token)

        def watch(ctx: WatchContext) -> None:
            refuse(token + "\n")

        return WatchInstancer(watch, name=f"leaky:{service}")

    def registrar(self, registration: Registration, **options: Any) -> LeakyRegistrar:
        self.tokens.append(options["token"])
        return LeakyRegistrar(registration, options["token"])


class Entry:
    name = "leaky"
    dist = None

    def __init__(self, backend: LeakyBackend) -> None:
        @sd_core.plugin.hookimpl
        def register_backends(register: Any) -> None:
            register(backend)

        self.plugin = type("Plugin", (), {"register_backends": staticmethod(register_backends)})

    def load(self) -> object:
        return self.plugin


@pytest.fixture
def leaky(monkeypatch: pytest.MonkeyPatch) -> LeakyBackend:
    backend = LeakyBackend()
    manager = PluginManager(entry_points=lambda: [Entry(backend)], builtins=(), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    monkeypatch.delenv("SD_LEAKY_TOKEN", raising=False)
    return backend


def shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    handler_text = caplog.text
    lines = [record.getMessage() for record in caplog.records]
    return handler_text + "\n".join(lines)


@pytest.mark.parametrize("given", [TOKEN + "\n", "  " + TOKEN + "\r\n", TOKEN])
def test_surrounding_whitespace_is_stripped_from_a_secret(leaky: LeakyBackend, given: str) -> None:
    with sd_core.instancer("leaky", "web", token=given):
        pass
    assert leaky.tokens == [TOKEN]


def test_a_secret_from_the_environment_or_the_url_is_stripped_too(
    leaky: LeakyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SD_LEAKY_TOKEN", TOKEN + "\n")
    sd_core.instancer("leaky", "web").stop()
    monkeypatch.delenv("SD_LEAKY_TOKEN")
    sd_core.instancer(f"leaky:///web?token={TOKEN}%0A").stop()
    assert leaky.tokens == [TOKEN, TOKEN]


@pytest.mark.parametrize("bad", ["ab\ncd-efgh", "ab\x00cd-efgh", "tab\tinside", ""])
def test_a_secret_with_a_control_character_inside_is_refused_before_any_use(
    leaky: LeakyBackend, bad: str
) -> None:
    with pytest.raises(ConfigError, match="'token'") as info:
        sd_core.instancer("leaky", "web", token=bad if bad else "  \n")
    assert leaky.tokens == []
    if bad:
        assert bad not in shown(info.value) and repr(bad)[1:-1] not in shown(info.value)


def test_an_error_event_holds_no_secret_in_any_form(
    leaky: LeakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with sd_core.instancer("leaky", "web", token=TOKEN) as instancer, instancer.subscribe() as sub:
        event = wait_for_event(sub, lambda e: not e.ok, 5, "an error")
        assert event.error is not None
        text = shown(event.error) + repr(instancer) + logged(caplog)
    assert TOKEN not in text
    assert REDACTED in str(event.error)


def test_a_registration_error_holds_no_secret_in_any_form(
    leaky: LeakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registrar = sd_core.registrar("leaky", Registration("web", "127.0.0.1", 1), token=TOKEN)
    with pytest.raises(RegistrationError) as info:
        registrar.register()
    health = registrar.health
    text = shown(info.value) + str(health) + repr(registrar) + logged(caplog)
    assert health.last_error is not None
    text += shown(health.last_error)
    assert TOKEN not in text


def test_scrub_covers_the_printed_forms_of_a_secret() -> None:
    from sd_core._secrets import add_secret

    secret = "p@ss word/with\\odd'chars"
    add_secret(secret)
    import json
    import urllib.parse

    for form in (
        secret,
        repr(secret),
        json.dumps(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        repr(secret.encode()),
    ):
        assert secret not in scrub(f"x {form} y")
        assert scrub(f"x {form} y").count(REDACTED) == 1, form


def test_scrub_error_cleans_the_whole_chain() -> None:
    from sd_core._secrets import add_secret

    add_secret(TOKEN)
    try:
        refuse(TOKEN)
    except LeakyError as exc:
        error = exc
    scrub_error(error)
    assert TOKEN not in shown(error)
