"""HTTP basic auth against the real server (Spring Security): credentials from the options
or from the URL, refusals reported as such, and the password nowhere to be seen."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import pytest
from eureka_helpers import FAST, MakeInstancer, MakeRegistrar, ids, wait_for
from pytest_sd.eureka import EurekaServer

import sd_core
from sd_core import ConfigError, Registration, RegistrationError

PROPAGATION = 5.0


def test_credentials_from_the_options_or_from_the_url(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
) -> None:
    # The URL's credentials, as Spring's defaultZone carries them, beside wrong options.
    from_url: dict[str, Any] = {
        "address": eureka_server.credentials_url,
        "username": "nobody",
        "password": "pw-not-this-one",
        **FAST,
    }
    make_registrar(Registration(sd_namespace, "127.0.0.1", 20501, id="a"), **from_url).register()
    with make_instancer(sd_namespace).subscribe() as sub:  # the options' credentials
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a")
    with make_instancer(sd_namespace, **from_url).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a")


def test_a_wrong_password_is_a_refusal_that_names_no_secret(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "pw-wrong-and-secret"
    with make_instancer(sd_namespace, password=wrong).subscribe() as sub:
        event = wait_for(sub, lambda e: not e.ok, PROPAGATION, "an error")
    assert isinstance(event.error, ConfigError)
    assert "credentials were refused (401)" in str(event.error)
    registrar = make_registrar(
        Registration(sd_namespace, "127.0.0.1", 20502, id="a"), password=wrong
    )
    with pytest.raises(RegistrationError, match=r"credentials were refused \(401\)") as refused:
        registrar.register()
    quoted = urllib.parse.quote(wrong)
    texts = [str(event.error), repr(event.error), str(refused.value), caplog.text]
    assert not [text for text in texts if wrong in text or quoted in text]


def test_no_credentials_says_so(eureka_server: EurekaServer, sd_namespace: str) -> None:
    instancer = sd_core.instancer("eureka", sd_namespace, address=eureka_server.address, **FAST)
    try:
        with instancer.subscribe() as sub:
            event = wait_for(sub, lambda e: not e.ok, PROPAGATION, "an error")
    finally:
        instancer.stop()
    assert isinstance(event.error, ConfigError)
    assert "credentials are required (none were given) (401)" in str(event.error)
