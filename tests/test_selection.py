"""Selecting a backend by name or URL, and converting its options."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import sd_core
import sd_core.plugin
from sd_core import ConfigError, FixedInstancer, Registration, UnknownBackendError
from sd_core import _plugins as plugins
from sd_core._plugins import PluginManager
from sd_core._url import parse_backend
from sd_core.plugin import BaseRegistrar, Option

SECRET = "s3cr3t-value-never-shown"


class RecordingRegistrar(BaseRegistrar):
    def _backend_register(self) -> None:
        pass

    def _backend_deregister(self) -> None:
        pass


class RecordingBackend:
    """Records what its factories were called with."""

    description = "records its calls"
    supports_discovery = True
    supports_registration = True

    def __init__(self, name: str = "rec", *, address: bool = True) -> None:
        self.name = name
        self.options = [
            Option("tag", list),
            Option("timeout", float, default=1.5),
            Option("verbose", bool, default=False),
            Option("retries", int, default=3, env="SD_REC_RETRIES"),
            Option("token", str, secret=True, env="SD_REC_TOKEN"),
            Option("dc", str, default="dc1", env="SD_REC_DC"),
        ]
        if address:
            self.options.insert(0, Option("address", default="127.0.0.1:1"))
        self.calls: list[tuple[object, dict[str, Any]]] = []

    def instancer(self, service: str, **options: Any) -> FixedInstancer:
        self.calls.append((service, options))
        return FixedInstancer()

    def registrar(self, registration: Registration, **options: Any) -> RecordingRegistrar:
        self.calls.append((registration, options))
        return RecordingRegistrar(registration)


class Plugin:
    def __init__(self, *backends: Any) -> None:
        @sd_core.plugin.hookimpl
        def register_backends(register: Any) -> None:
            for backend in backends:
                register(backend)

        self.register_backends = register_backends


class EntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name = name
        self.dist = None
        self._target = target

    def load(self) -> object:
        return self._target


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    backend = RecordingBackend()
    no_discovery = RecordingBackend("announce", address=False)
    no_discovery.supports_discovery = False
    no_registration = RecordingBackend("lookup")
    no_registration.supports_registration = False
    eps = [EntryPoint("rec", Plugin(backend, no_discovery, no_registration))]
    manager = PluginManager(entry_points=lambda: eps, builtins=(), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    for name in ("SD_REC_RETRIES", "SD_REC_TOKEN", "SD_REC_DC"):
        monkeypatch.delenv(name, raising=False)
    return backend


def last_options(backend: RecordingBackend) -> dict[str, Any]:
    return backend.calls[-1][1]


# -- URLs ---------------------------------------------------------------------------------


def test_parse_name() -> None:
    target = parse_backend("consul")
    assert (target.backend, target.address, target.service, target.query) == (
        "consul",
        None,
        None,
        {},
    )


def test_parse_url() -> None:
    target = parse_backend("consul://127.0.0.1:8500/web?tag=a&tag=b&dc=x")
    assert target.backend == "consul"
    assert target.address == "127.0.0.1:8500"
    assert target.service == "web"
    assert target.query == {"tag": ["a", "b"], "dc": ["x"]}


def test_parse_ipv6_and_quoted_service() -> None:
    target = parse_backend("etcd://[::1]:2379/my%20svc/")
    assert target.address == "[::1]:2379"
    assert target.service == "my svc"


def test_parse_url_without_address() -> None:
    target = parse_backend("local:///web")
    assert (target.address, target.service) == (None, "web")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("://x", "no backend name"),
        ("consul://h:notaport/web", "port"),
        ("consul://h:8500/web#frag", "fragment"),
        ("", "required"),
    ],
)
def test_parse_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_backend(url)


def test_credentials_in_url_are_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as info:
        parse_backend(f"consul://user:{SECRET}@h:8500/web")
    assert SECRET not in str(info.value)


# -- selection ----------------------------------------------------------------------------


def test_backends_lists_installed(rec: RecordingBackend) -> None:
    installed = sd_core.backends()
    assert installed["rec"].backend is rec
    assert installed["rec"].distribution == "unknown distribution"


def test_instancer_by_name_gets_every_option_with_defaults(rec: RecordingBackend) -> None:
    with sd_core.instancer("rec", "web") as instancer:
        assert isinstance(instancer.source, FixedInstancer)  # type: ignore[attr-defined]
    assert rec.calls == [
        (
            "web",
            {
                "address": "127.0.0.1:1",
                "tag": None,
                "timeout": 1.5,
                "verbose": False,
                "retries": 3,
                "token": None,
                "dc": "dc1",
            },
        )
    ]


def test_instancer_by_url(rec: RecordingBackend) -> None:
    sd_core.instancer("rec://[::1]:8500/web?tag=a&tag=b&timeout=2.5&verbose=yes&retries=7")
    service, options = rec.calls[-1]
    assert service == "web"
    assert options["address"] == "[::1]:8500"
    assert options["tag"] == ["a", "b"]
    assert options["timeout"] == 2.5
    assert options["verbose"] is True
    assert options["retries"] == 7


@pytest.mark.parametrize(
    ("word", "value"),
    [(w, True) for w in ("1", "true", "YES", "on")]
    + [(w, False) for w in ("0", "False", "no", "off")],
)
def test_bool_words(rec: RecordingBackend, word: str, value: bool) -> None:
    sd_core.instancer(f"rec:///web?verbose={word}")
    assert last_options(rec)["verbose"] is value


def test_keywords_are_converted(rec: RecordingBackend) -> None:
    sd_core.instancer("rec", "web", retries="5", timeout=2, tag="one", verbose="off")
    options = last_options(rec)
    assert options["retries"] == 5
    assert options["timeout"] == 2.0
    assert isinstance(options["timeout"], float)
    assert options["tag"] == ["one"]
    assert options["verbose"] is False


def test_precedence_keyword_url_env_default(
    rec: RecordingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SD_REC_RETRIES", "10")
    monkeypatch.setenv("SD_REC_DC", "from-env")
    sd_core.instancer("rec:///web?retries=20", retries=30)
    assert last_options(rec)["retries"] == 30
    assert last_options(rec)["dc"] == "from-env"
    sd_core.instancer("rec:///web?retries=20")
    assert last_options(rec)["retries"] == 20
    sd_core.instancer("rec:///web")
    assert last_options(rec)["retries"] == 10
    sd_core.instancer("rec:///web", retries=None)  # None counts as not given
    assert last_options(rec)["retries"] == 10
    monkeypatch.delenv("SD_REC_RETRIES")
    sd_core.instancer("rec:///web")
    assert last_options(rec)["retries"] == 3


def test_keyword_address_overrides_url(rec: RecordingBackend) -> None:
    sd_core.instancer("rec://a:1/web", address="b:2")
    assert last_options(rec)["address"] == "b:2"


def test_unknown_backend(rec: RecordingBackend) -> None:
    with pytest.raises(UnknownBackendError) as info:
        sd_core.instancer("consul://127.0.0.1:8500/web")
    message = str(info.value)
    assert "'consul' is not available (plugin may not be installed)" in message
    assert "installed backends: announce, lookup, rec" in message
    assert 'pip install "sd-core[consul]"' in message
    assert isinstance(info.value, LookupError)


def test_unknown_backend_without_an_extra_does_not_suggest_one(rec: RecordingBackend) -> None:
    with pytest.raises(UnknownBackendError) as info:
        sd_core.instancer("nosuch://127.0.0.1:1/web")
    message = str(info.value)
    assert "sd-core[nosuch]" not in message
    assert "no extra of sd-core provides it (extras: consul, dnssrv, etcd, eureka, zookeeper)" in (
        message
    )


def test_unknown_backend_mentions_failed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        name = "consul"
        dist = None

        def load(self) -> object:
            raise ImportError("No module named 'consul_client'")

    manager = PluginManager(entry_points=lambda: [Broken()], builtins=(), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    with pytest.raises(UnknownBackendError, match="consul_client"):
        sd_core.instancer("consul", "web")


def test_unknown_option(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError) as info:
        sd_core.instancer("rec", "web", retires=3)
    message = str(info.value)
    assert "unknown option 'retires'" in message
    assert "did you mean 'retries'?" in message
    assert "accepted options: address (str), tag (list), timeout (float), verbose (bool)" in message
    assert "token (str, secret)" in message


def test_unknown_option_in_url(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError, match="unknown option 'colour' in the URL"):
        sd_core.instancer("rec:///web?colour=red")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": "many"}, "option 'retries' must be an integer, got 'many'"),
        ({"retries": True}, "option 'retries' must be an integer, got True"),
        ({"timeout": "soon"}, "option 'timeout' must be a number, got 'soon'"),
        ({"verbose": "maybe"}, "option 'verbose' must be a boolean"),
        ({"tag": 3}, "option 'tag' must be a list of strings"),
        ({"dc": 3}, "option 'dc' must be a string, got 3"),
    ],
)
def test_ill_typed_option(rec: RecordingBackend, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="accepted options") as info:
        sd_core.instancer("rec", "web", **kwargs)
    assert message in str(info.value)


def test_ill_typed_env(rec: RecordingBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SD_REC_RETRIES", "lots")
    with pytest.raises(ConfigError, match="from environment variable SD_REC_RETRIES"):
        sd_core.instancer("rec", "web")


def test_repeated_scalar_in_url(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError, match="given 2 times"):
        sd_core.instancer("rec:///web?retries=1&retries=2")


def test_env_list_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = RecordingBackend()
    backend.options[1] = Option("tag", list, env="SD_REC_TAGS")
    manager = PluginManager(
        entry_points=lambda: [EntryPoint("rec", Plugin(backend))], builtins=(), environ={}
    )
    monkeypatch.setattr(plugins, "_manager", manager)
    monkeypatch.setenv("SD_REC_TAGS", "a, b,,c")
    sd_core.instancer("rec", "web")
    assert last_options(backend)["tag"] == ["a", "b", "c"]


def test_secret_never_in_errors_or_logs(
    rec: RecordingBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        sd_core.instancer("rec", "web", token=12345)
    assert "option 'token' must be a string" in str(info.value)
    assert "12345" not in str(info.value)

    with pytest.raises(ConfigError) as info:
        sd_core.instancer(f"rec:///web?token={SECRET}&token={SECRET}")
    assert SECRET not in str(info.value)

    with pytest.raises(ConfigError) as info:
        sd_core.instancer(f"rec:///web?token={SECRET}&bogus=1")
    assert SECRET not in str(info.value)

    sd_core.instancer(f"rec:///web?token={SECRET}")
    monkeypatch.setenv("SD_REC_TOKEN", SECRET)
    sd_core.instancer("rec", "web")
    assert last_options(rec)["token"] == SECRET
    registration = Registration("web", "127.0.0.1", 8080)
    with sd_core.registrar("rec", registration, token=SECRET) as registrar:
        assert SECRET not in repr(registrar)
    assert caplog.records  # the selection was logged ...
    assert SECRET not in caplog.text  # ... without the secret
    assert SECRET not in repr(Option("token", default=SECRET, secret=True))


def test_no_service(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError, match="no service given"):
        sd_core.instancer("rec://127.0.0.1:1")


def test_service_given_twice_must_agree(rec: RecordingBackend) -> None:
    sd_core.instancer("rec:///web", "web")
    with pytest.raises(ConfigError, match="names service 'web' but 'api'"):
        sd_core.instancer("rec:///web", "api")


def test_backend_without_discovery(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError, match="announce backend does not support discovery"):
        sd_core.instancer("announce", "web")


def test_backend_without_registration(rec: RecordingBackend) -> None:
    registration = Registration("web", "127.0.0.1", 8080)
    with pytest.raises(ConfigError, match="lookup backend does not support registration"):
        sd_core.registrar("lookup", registration)


def test_backend_without_address_option(rec: RecordingBackend) -> None:
    registration = Registration("web", "127.0.0.1", 8080)
    with pytest.raises(ConfigError, match="takes no address"):
        sd_core.registrar("announce://h:1/web", registration)


def test_registrar(rec: RecordingBackend) -> None:
    registration = Registration("web", "127.0.0.1", 8080)
    registrar = sd_core.registrar("rec://h:9/web?dc=two", registration)
    assert registrar.registration is registration
    assert rec.calls[-1][0] is registration
    assert last_options(rec)["dc"] == "two"
    assert last_options(rec)["address"] == "h:9"


def test_registrar_url_path_must_match_the_registration(rec: RecordingBackend) -> None:
    registration = Registration("web", "127.0.0.1", 8080)
    with pytest.raises(ConfigError, match="names service 'api' but 'web'"):
        sd_core.registrar("rec:///api", registration)


def test_registrar_needs_a_registration(rec: RecordingBackend) -> None:
    with pytest.raises(ConfigError, match="needs a Registration"):
        sd_core.registrar("rec:///web")
