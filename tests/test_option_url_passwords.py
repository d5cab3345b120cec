"""A password written in a URL inside an option's value (``http://user:password@host``, as
Spring's Eureka ``defaultZone`` carries it) is a secret from the moment the options are
resolved: before the core logs them, and in the errors that quote a value."""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Sequence
from typing import Any

import pytest

import sd_core
import sd_core.plugin
from sd_core import ConfigError, Registration
from sd_core import _plugins as plugins
from sd_core._options import resolve_options
from sd_core._plugins import PluginManager
from sd_core._secrets import REDACTED, scrub
from sd_core.plugin import Duration, Option, WatchContext, WatchInstancer


def fresh(prefix: str = "pw") -> str:
    """A password no other test recorded."""
    return f"{prefix}-{secrets.token_hex(6)}"


def hidden(password: str) -> bool:
    return scrub(f"[{password}]") == f"[{REDACTED}]"


class UrlBackend:
    """A backend whose ``address`` takes server URLs (none of its options is secret)."""

    name = "urls"
    description = "takes server URLs"
    options: Sequence[Option] = (
        Option("address", list, None, "server URLs", env="SD_URLS_ADDRESS", connection=True),
        Option("timeout", Duration, "1s", "a duration"),
        Option("label", str, None, "any text"),
    )
    supports_discovery = True
    supports_registration = False

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def instancer(self, service: str, **options: Any) -> WatchInstancer:
        self.seen.append(options)

        def watch(ctx: WatchContext) -> None:
            ctx.publish([])
            ctx.wait(60)

        return WatchInstancer(watch, name=f"urls:{service}")

    def registrar(self, registration: Registration, **options: Any) -> Any:
        raise NotImplementedError


class Entry:
    name = "urls"
    dist = None

    def __init__(self, backend: UrlBackend) -> None:
        @sd_core.plugin.hookimpl
        def register_backends(register: Any) -> None:
            register(backend)

        self.plugin = type("Plugin", (), {"register_backends": staticmethod(register_backends)})

    def load(self) -> object:
        return self.plugin


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> UrlBackend:
    backend = UrlBackend()
    manager = PluginManager(entry_points=lambda: [Entry(backend)], builtins=(), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    return backend


def resolve(
    keywords: dict[str, object] | None = None,
    query: dict[str, list[str]] | None = None,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    return resolve_options(
        UrlBackend(), keywords=keywords or {}, query=query or {}, environ=environ or {}
    )


def test_the_password_of_a_url_in_a_keyword_is_a_secret_in_every_form() -> None:
    password = fresh("p@ss/wörd")
    quoted = urllib.parse.quote(password, safe="")
    assert not hidden(password) and not hidden(quoted)
    options = resolve(keywords={"address": [f"http://user:{quoted}@h1:8761/eureka"]})
    assert options["address"] == [f"http://user:{quoted}@h1:8761/eureka"], "values unchanged"
    assert hidden(password), "as the plugin decodes it"
    assert hidden(quoted), "as written in the URL"


def test_every_url_of_a_list_or_a_comma_separated_value() -> None:
    first, second, third = fresh(), fresh(), fresh()
    resolve(
        keywords={
            "address": [
                f"http://a:{first}@h1:8761/eureka/,https://b:{second}@h2",
                f"HTTPS://c:{third}@[::1]:8443/eureka/v2",
            ]
        }
    )
    assert hidden(first) and hidden(second) and hidden(third)


def test_an_unescaped_at_sign_belongs_to_the_password() -> None:
    """The credentials end at the last ``@`` before the path, as the plugin reads them."""
    password = fresh("p@ss")
    resolve(keywords={"address": f"http://user:{password}@h1/eureka"})
    assert hidden(password)


def test_from_the_url_query_and_from_the_environment() -> None:
    in_query, in_env = fresh(), fresh()
    resolve(query={"address": [f"http://u:{in_query}@h1/eureka"]})
    assert hidden(in_query)
    environ = {"SD_URLS_ADDRESS": f"http://u:{in_env}@h1/eureka,http://u:{in_env}@h2/eureka"}
    options = resolve(environ=environ)
    assert len(options["address"]) == 2
    assert hidden(in_env)


def test_any_option_not_just_the_address() -> None:
    password = fresh()
    resolve(keywords={"label": f"see https://ops:{password}@dashboard.example/x"})
    assert hidden(password)


@pytest.mark.parametrize(
    "template",
    [
        "http://user@h1/eureka?note={word}",  # a user and no password
        "http://user:@h1/{word}",  # an empty password
        "http://h1:8761/eureka/{word}@x",  # an @ in the path is no userinfo
        "http://h1/eureka?q=a:{word}@x",  # nor in the query
        "mailto:a:{word}@example.org",  # no //: not a URL with an authority
        "a:{word}@h1:8761",  # no scheme: not a URL
    ],
)
def test_what_is_not_a_url_password_stays_visible(template: str) -> None:
    word = fresh("visible")
    resolve(keywords={"label": template.format(word=word)})
    assert not hidden(word)


def test_the_core_never_logs_it_nor_quotes_it_in_an_error(
    backend: UrlBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logged, misplaced = fresh(), fresh()
    address = f"http://user:{logged}@127.0.0.1:1/eureka"
    with (
        sd_core.instancer("urls", "web", address=[address]) as instancer,
        instancer.subscribe() as events,
    ):
        assert events.get(timeout=10).ok
    assert backend.seen and backend.seen[0]["address"] == [address]
    assert "instancer of 'web' on backend urls" in caplog.text, "the line that shows options"
    assert logged not in caplog.text
    # A URL given to an option of another type: the error quotes the value, hidden.
    with pytest.raises(ConfigError, match="'timeout' must be a duration") as refused:
        sd_core.instancer("urls", "web", timeout=f"http://user:{misplaced}@h1/eureka")
    assert misplaced not in str(refused.value)
    assert REDACTED in str(refused.value)
    with pytest.raises(ConfigError, match="'address' must be a list of strings") as mixed:
        sd_core.instancer("urls", "web", address=[f"http://u:{misplaced}@h1", 7])
    assert misplaced not in str(mixed.value)
