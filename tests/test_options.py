"""Typed options: durations, the connection options every server backend declares, the
address parser and TLS settings they share, and one resolution for direct backend calls."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import sd_core
import sd_core.plugin
from sd_core import ConfigError, FixedInstancer, Registration
from sd_core import _plugins as plugins
from sd_core._backend import (
    Duration,
    DurationError,
    format_duration,
    parse_duration,
    type_name,
)
from sd_core._connection_options import (
    Address,
    TLSSettings,
    connection_options,
    parse_address,
    parse_addresses,
    tls_settings,
)
from sd_core._options import describe_option, resolve_for, resolve_options
from sd_core._plugins import PluginManager
from sd_core.cli.plugins import _option_json, _option_line
from sd_core.local import LocalBackend
from sd_core.plugin import Option

SECRET = "s3cr3t-value-never-shown"
HTTP_PORTS = {"http": 8500, "https": 8501}


class TimerBackend:
    """A backend with duration and connection options whose factories resolve what they get,
    as every backend does at its entry points."""

    name = "timer"
    description = "durations and connection options"
    supports_discovery = True
    supports_registration = True
    options: Sequence[Option] = (
        *connection_options(
            default_address="127.0.0.1:4000",
            addresses=True,
            token=True,
            username_password=True,
            timeout="5s",
            env={"address": "TIMER_ADDRS", "password": "TIMER_PASSWORD", "timeout": "TIMER_T"},
        ),
        Option("wait", Duration, "30s", "a wait", min=1, max=600),
        Option("grace", Duration, 2.5, "a grace period"),
        Option("expire_after", Duration, "1m", "or never", min=1, never=True),
        Option("pin", Duration, None, "a secret duration", secret=True),
    )

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def instancer(self, service: str, **options: Any) -> FixedInstancer:
        self.calls.append(resolve_for(self, options))
        return FixedInstancer()

    def registrar(self, registration: Registration, **options: Any) -> Any:
        raise NotImplementedError


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
def timer(monkeypatch: pytest.MonkeyPatch) -> TimerBackend:
    backend = TimerBackend()
    eps = [EntryPoint("timer", Plugin(backend))]
    manager = PluginManager(entry_points=lambda: eps, builtins=("sd_core.local",), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    for name in ("TIMER_ADDRS", "TIMER_PASSWORD", "TIMER_T", "SD_LOCAL_PATH"):
        monkeypatch.delenv(name, raising=False)
    return backend


def resolved(backend: TimerBackend, **options: Any) -> dict[str, Any]:
    sd_core.instancer("timer", "web", **options).stop()
    return backend.calls[-1]


# -- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        ("2.5", 2.5),
        ("30", 30.0),
        (" 10s ", 10.0),
        ("0", 0.0),
        (".5", 0.5),
        ("1.", 1.0),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("100us", 1e-4),
        ("100µs", 1e-4),  # MICRO SIGN
        ("100μs", 1e-4),  # GREEK SMALL LETTER MU
        ("1500ns", 1.5e-6),
        ("1s500ms", 1.5),
        (timedelta(minutes=2, milliseconds=5), 120.005),
    ],
)
def test_duration_forms(given: object, seconds: float) -> None:
    assert parse_duration(given) == pytest.approx(seconds)
    assert Duration.parse(given) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("-1s", "negative"),
        ("-5", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        (math.nan, "not a number"),
        ("nan", "not a number"),
        (math.inf, "not finite"),
        ("inf", "not finite"),
        ("-inf", "negative"),
        ("1x", "unknown unit 'x'"),
        ("1sec", "unknown unit 'sec'"),
        ("1m30", "30 has no unit"),
        ("1m 30s", "spaces inside"),
        ("", "empty"),
        ("   ", "empty"),
        ("soon", ""),
        ("s", ""),
        ("1e3", "unknown unit 'e'"),
        ("1_000", "unknown unit '_'"),
        ("+5s", ""),
        ("1.2.3s", ""),
        ("never", ""),  # only options declared never=True take it
        (True, "a boolean"),
        (None, "a NoneType"),
        ([1], "a list"),
        (10**400, "too long"),
        ("9" * 400 + "h", "too long"),
    ],
)
def test_duration_refusals(given: object, reason: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(given)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    assert "accepted: a number of seconds" in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1e-9, "1ns"),
        (1.5e-6, "1.5us"),
        (0.0015, "1.5ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m"),
        (90, "1m30s"),
        (120.5, "2m0.5s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (3661.001, "1h1m1.001s"),
        (2562047 * 3600, "2562047h"),
    ],
)
def test_format_duration_is_go_style_and_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert Duration.format(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_format_duration_refuses_what_is_no_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        format_duration(bad)


def test_duration_options_are_converted_from_every_source(
    timer: TimerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = resolved(timer)
    assert (defaults["wait"], defaults["grace"], defaults["timeout"]) == (30.0, 2.5, 5.0)
    assert defaults["pin"] is None
    assert all(isinstance(defaults[name], float) for name in ("wait", "grace", "timeout"))
    assert resolved(timer, wait=5)["wait"] == 5.0
    assert resolved(timer, wait="1m30s")["wait"] == 90.0
    assert resolved(timer, wait=timedelta(seconds=7))["wait"] == 7.0
    sd_core.instancer("timer:///web?wait=1500ms&grace=0").stop()
    assert (timer.calls[-1]["wait"], timer.calls[-1]["grace"]) == (1.5, 0.0)
    monkeypatch.setenv("TIMER_T", "250ms")
    assert resolved(timer)["timeout"] == 0.25


def test_duration_bounds_are_seconds_and_said_as_durations(timer: TimerBackend) -> None:
    assert resolved(timer, wait="10m")["wait"] == 600.0
    assert resolved(timer, wait=1)["wait"] == 1.0
    for wait in ("999ms", 0.5, "10m1s", 601):
        with pytest.raises(ConfigError) as info:
            sd_core.instancer("timer", "web", wait=wait)
        assert f"timer: option 'wait' must be between 1s and 10m, got {wait!r}" in str(info.value)
    with pytest.raises(ConfigError, match=r"'timeout' must be between 10ms and 10m, got '5ms'"):
        sd_core.instancer("timer", "web", timeout="5ms")
    with pytest.raises(ConfigError, match=r"'expire_after' must be at least 1s \(or never\)"):
        sd_core.instancer("timer", "web", expire_after="0s")


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("-1s", " (negative)"),
        (-3, " (negative)"),
        (math.nan, " (not a number)"),
        ("NaN", " (not a number)"),
        (math.inf, " (not finite)"),
        ("inf", " (not finite)"),
        ("1x", " (unknown unit 'x')"),
        ("1m 30s", " (spaces inside)"),
        ("soon", ""),
        (True, " (a boolean)"),
    ],
)
def test_a_bad_duration_is_a_config_error_naming_option_value_and_forms(
    timer: TimerBackend, given: object, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        sd_core.instancer("timer", "web", wait=given)
    message = str(info.value)
    assert "timer: option 'wait' must be a duration (a number of seconds (30, 2.5) or " in message
    assert "500ms, 10s, 1.5s, 1m30s, 1h (units ns, us, ms, s, m, h))" in message
    assert f", got {given!r}{why}; accepted options: " in message
    assert "wait (duration)" in message


def test_a_bad_duration_in_a_url_or_the_environment(
    timer: TimerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"option 'wait' in the URL must be a duration"):
        sd_core.instancer("timer:///web?wait=-1s")
    with pytest.raises(ConfigError, match=r"'wait' in the URL must be .*\(it was given 2 times\)"):
        sd_core.instancer("timer:///web?wait=1s&wait=2s")
    monkeypatch.setenv("TIMER_T", "10 s")
    with pytest.raises(ConfigError, match=r"'timeout' from environment variable TIMER_T must"):
        sd_core.instancer("timer", "web")


def test_never(timer: TimerBackend) -> None:
    assert resolved(timer)["expire_after"] == 60.0
    for never in ("never", "Never", " NEVER ", "", math.inf):
        assert resolved(timer, expire_after=never)["expire_after"] == math.inf
    sd_core.instancer("timer:///web?expire_after=never").stop()
    assert timer.calls[-1]["expire_after"] == math.inf
    sd_core.instancer("timer:///web?expire_after=").stop()
    assert timer.calls[-1]["expire_after"] == math.inf
    with pytest.raises(ConfigError, match=r"'expire_after' must be a duration \(.*\) or never"):
        sd_core.instancer("timer", "web", expire_after="forever")
    with pytest.raises(ConfigError, match=r"'expire_after' must be a duration .*\(not finite\)"):
        sd_core.instancer("timer", "web", expire_after="inf")
    with pytest.raises(ConfigError, match=r"'wait' must be a duration \(.*\), got 'never';"):
        sd_core.instancer("timer", "web", wait="never")  # not declared never=True


def test_a_secret_duration_is_never_shown(timer: TimerBackend) -> None:
    for bad in (f"{SECRET}s", f"1{SECRET}", f"-{SECRET}"):
        with pytest.raises(ConfigError) as info:
            sd_core.instancer("timer", "web", pin=bad)
        assert "(value hidden: the option is secret)" in str(info.value)
        assert SECRET not in str(info.value)
    assert resolved(timer, pin="3s")["pin"] == 3.0


def test_duration_declarations() -> None:
    assert Option("t", Duration, "30s").default == "30s"  # shown as declared
    Option("t", Duration, 30, min=1, max=600)
    Option("t", Duration, "never", never=True, max=1)
    with pytest.raises(ValueError, match=r"Option 't': the default 'soon' is not a duration"):
        Option("t", Duration, "soon")
    with pytest.raises(ValueError, match=r"the default is outside min..max"):
        Option("t", Duration, "11m", max=600)
    with pytest.raises(ValueError, match=r"never applies to Duration options"):
        Option("t", float, 1.0, never=True)
    with pytest.raises(ValueError, match=r"min and max of a duration are seconds >= 0"):
        Option("t", Duration, min=-1)
    with pytest.raises(ValueError, match=r"type must be one of .*Duration"):
        Option("t", dict)


def test_the_type_is_shown_as_duration() -> None:
    option = Option("wait", Duration, "1m30s", "a wait", min=1)
    assert type_name(Duration) == "duration"
    assert option.type_name == "duration"
    assert describe_option(option) == "wait (duration)"
    assert repr(option) == "Option('wait', duration, default='1m30s')"
    assert _option_line(option) == "wait (duration): a wait [default 1m30s]"
    assert _option_json(option)["type"] == "duration"
    assert _option_json(option)["default"] == "1m30s"
    assert _option_json(Option("w", Duration, 90))["default"] == "1m30s"
    assert _option_json(Option("w", Duration, "", never=True))["default"] == "never"
    assert _option_line(Option("n", int, 3)) == "n (int) [default 3]"


# -- connection options --------------------------------------------------------------------


def by_name(options: tuple[Option, ...]) -> dict[str, Option]:
    return {option.name: option for option in options}


def test_connection_options_declared_per_backend() -> None:
    plain = by_name(connection_options(default_address="h:1"))
    assert list(plain) == ["address", "ca", "cert", "key", "verify", "timeout"]
    assert all(option.connection for option in plain.values())
    assert (plain["address"].type, plain["address"].default) == (str, "h:1")
    assert (plain["verify"].type, plain["verify"].default) == (bool, True)
    timeout = plain["timeout"]
    assert (timeout.type, timeout.default, timeout.min, timeout.max) == (Duration, "10s", 0.01, 600)
    everything = by_name(
        connection_options(
            default_address=None,
            addresses=True,
            token=True,
            username_password=True,
            timeout=2.5,
        )
    )
    assert list(everything) == [
        "address",
        "username",
        "password",
        "token",
        "ca",
        "cert",
        "key",
        "verify",
        "timeout",
    ]
    assert (everything["address"].type, everything["address"].default) == (list, [])
    assert {name for name, option in everything.items() if option.secret} == {"password", "token"}
    assert everything["timeout"].default == 2.5
    no_tls = by_name(connection_options(default_address="h", tls=False, addresses=True))
    assert list(no_tls) == ["address", "timeout"]
    assert no_tls["address"].default == ["h"]
    assert not Option("x").connection


@pytest.mark.parametrize(
    ("flags", "env"),
    [  # each backend's own variables
        (
            {"token": True},
            {
                "address": "CONSUL_HTTP_ADDR",
                "token": "CONSUL_HTTP_TOKEN",
                "ca": "CONSUL_CACERT",
                "cert": "CONSUL_CLIENT_CERT",
                "key": "CONSUL_CLIENT_KEY",
                "verify": "CONSUL_HTTP_SSL_VERIFY",
            },
        ),
        (
            {"addresses": True, "username_password": True},
            {
                "address": "ETCDCTL_ENDPOINTS",
                "username": "ETCDCTL_USER",
                "password": "ETCDCTL_PASSWORD",
                "ca": "ETCDCTL_CACERT",
                "cert": "ETCDCTL_CERT",
                "key": "ETCDCTL_KEY",
                "timeout": "ETCDCTL_DIAL_TIMEOUT",
            },
        ),
        ({"addresses": True, "tls": False}, {"address": "ZOOKEEPER_HOSTS"}),
        ({}, {}),
    ],
)
def test_connection_options_take_each_backend_s_environment_variables(
    flags: dict[str, Any], env: dict[str, str]
) -> None:
    options = by_name(connection_options(default_address="h", env=env, **flags))
    assert {name: option.env for name, option in options.items() if option.env} == env


def test_connection_options_refuse_names_they_do_not_declare() -> None:
    with pytest.raises(ValueError, match="env names token, which are not declared"):
        connection_options(default_address="h", env={"token": "X_TOKEN"})
    with pytest.raises(ValueError, match="helps names adress"):
        connection_options(default_address="h", helps={"adress": "typo"})
    with pytest.raises(ValueError, match="the default 'soon' is not a duration"):
        connection_options(default_address="h", timeout="soon")
    options = by_name(connection_options(default_address="h", helps={"ca": "the CA"}))
    assert options["ca"].help == "the CA"


def test_connection_options_resolve(timer: TimerBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    options = resolved(timer)
    assert options["address"] == ["127.0.0.1:4000"]
    assert (options["verify"], options["token"], options["timeout"]) == (True, None, 5.0)
    assert resolved(timer, address="a:1,b:2")["address"] == ["a:1,b:2"]
    assert resolved(timer, address=["a:1", "b:2"])["address"] == ["a:1", "b:2"]
    sd_core.instancer("timer://[::1]:7/web").stop()
    assert timer.calls[-1]["address"] == ["[::1]:7"]
    monkeypatch.setenv("TIMER_ADDRS", "a:1, b:2")
    addresses = resolved(timer)["address"]
    assert addresses == ["a:1", "b:2"]
    assert parse_addresses(addresses, 4000) == (Address("a", 1), Address("b", 2))
    monkeypatch.setenv("TIMER_PASSWORD", f" {SECRET}\n")
    assert resolved(timer)["password"] == SECRET  # a secret: stripped


def test_connection_secrets_are_never_shown(
    timer: TimerBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError) as info:
        sd_core.instancer("timer", "web", password=f"{SECRET}\x00", bogus=1)
    assert SECRET not in str(info.value)
    for field in ("password", "token"):
        with pytest.raises(ConfigError) as info:
            sd_core.instancer("timer", "web", **{field: f"{SECRET[:9]}\n{SECRET[9:]}"})
        assert f"option {field!r} holds a control character" in str(info.value)
        assert SECRET[:9] not in str(info.value)
        with pytest.raises(ConfigError) as info:
            sd_core.instancer("timer", "web", **{field: 12345678})
        assert "12345678" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_address(f"http://user:{SECRET}@h:1", 80, backend="timer")
    assert "holds credentials" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


# -- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("h:1", Address("h", 1)),
        ("h", Address("h", 8500)),
        ("  h:2  ", Address("h", 2)),
        ("consul.example.:1", Address("consul.example.", 1)),
        ("consul_server:8500", Address("consul_server", 8500)),  # Docker names
        ("10.0.0.1", Address("10.0.0.1", 8500)),
        ("10.0.0.1:65535", Address("10.0.0.1", 65535)),
        ("[::1]:9", Address("::1", 9)),
        ("[::1]", Address("::1", 8500)),
        ("[2001:db8::1]:80/", Address("2001:db8::1", 80)),
        ("[fe80::1%eth0]:8500", Address("fe80::1%eth0", 8500)),
        ("[fe80::1%25eth0]:8500", Address("fe80::1%eth0", 8500)),  # RFC 6874
        ("http://h:1", Address("h", 1, "http")),
        ("HTTPS://h", Address("h", 8501, "https")),
        ("https://[fe80::1%25en0.100]/", Address("fe80::1%en0.100", 8501, "https")),
        ("http://h/", Address("h", 8500, "http")),
    ],
)
def test_address_forms(text: str, address: Address) -> None:
    assert parse_address(text, HTTP_PORTS, default_scheme="http") == address


def test_address_values() -> None:
    address = parse_address("[fe80::1%25eth0]:1", 80)
    assert (address.host, address.port, address.scheme) == ("fe80::1%eth0", 1, None)
    host, port, scheme = address
    assert (host, port, scheme) == ("fe80::1%eth0", 1, None)
    assert address.netloc == "[fe80::1%eth0]:1"
    assert address.url("https") == "https://[fe80::1%25eth0]:1"
    assert str(address) == "[fe80::1%eth0]:1"
    assert str(parse_address("https://h", 1)) == "https://h:1"
    assert parse_address("h", 1).url() == "http://h:1"


def test_default_ports() -> None:
    assert parse_address("h", 2379).port == 2379
    assert parse_address("h", HTTP_PORTS, default_scheme="https").port == 8501
    assert parse_address("http://h", HTTP_PORTS, default_scheme="https").port == 8500
    with pytest.raises(ConfigError, match=r"option tcp_check has no port \(host:port\)"):
        parse_address("h", None, schemes=(), option="tcp_check")
    with pytest.raises(ValueError, match="no default port for scheme 'gopher'"):
        parse_address("h", HTTP_PORTS, default_scheme="gopher")
    with pytest.raises(ConfigError, match=r"takes no scheme, but http:// was given"):
        parse_address("http://h:1", 2181, schemes=())


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("h:0", "has port 0, which does not mean the default port: leave the port out for that"),
        ("[::1]:0", "has port 0"),
        ("h:99999", "has port 99999, which is out of range"),
        ("h:port", "has port 'port', which is not a number"),
        ("h:-1", "has port '-1', which is not a number"),
        ("h:١٢", "has port '١٢', which is not a number"),  # digits, but not ASCII ones
        ("h:", "has no port after ':'"),
        ("", "names no host"),
        (":80", "names no host"),
        ("http://", "names no host"),
        ("h:1/path", "has a path, a query or a fragment"),
        ("h:1?x=1", "has a path, a query or a fragment"),
        ("h#x", "has a path, a query or a fragment"),
        ("::1", "has an IPv6 address outside brackets: write it [::1]:port"),
        ("::1:8500", "has an IPv6 address outside brackets"),
        ("[::1", "opens '[' without closing it"),
        ("[::1]x", "has something other than :port after ']'"),
        ("[zz::1]:1", "has a bad host: '[zz::1]' is in brackets but is not a valid IPv6"),
        ("[h]:1", "has a bad host: '[h]' is in brackets but is not a valid IPv6"),
        ("[fe80::1%e$th]:1", "has a bad host: '[fe80::1%e$th]' has an IPv6 zone that is not"),
        ("999.1.1.1:1", "has a bad host: '999.1.1.1' is not a valid IPv4 address"),
        ("-bad-:1", "has a bad host: '-bad-' is not a hostname"),
        ("a b:1", "has a bad host: 'a b' holds ' '"),
        ("bücher.example", "has a bad host: 'bücher.example' holds 'ü'"),
        ("ftp://h:1", "has scheme ftp://, which is not http or https"),
    ],
)
def test_bad_addresses(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text, HTTP_PORTS, default_scheme="http", backend="consul")
    message = str(info.value)
    assert message.startswith(f"consul: option address {why}")
    assert f", got {text!r}; accepted: host:port, [IPv6]:port, host (port 8500 for http" in message
    assert "http://host:port or https://host:port, where host is a hostname" in message
    assert message.endswith("and port is a number in 1..65535")


def test_several_addresses() -> None:
    assert parse_addresses("a:1,b:2", 9) == (Address("a", 1), Address("b", 2))
    assert parse_addresses(["a:1, b", "[::1]:3", "a:1", ""], 9) == (
        Address("a", 1),
        Address("b", 9),
        Address("::1", 3),
    )
    assert parse_addresses("https://a,http://b", HTTP_PORTS, default_scheme="http") == (
        Address("a", 8501, "https"),
        Address("b", 8500, "http"),
    )
    empties: list[str | list[str] | None] = [[], "", " , ", None]
    for empty in empties:
        with pytest.raises(ConfigError, match=r"etcd: option address names no address"):
            parse_addresses(empty, 2379, backend="etcd")
    with pytest.raises(ConfigError, match=r"etcd: option address has port 0"):
        parse_addresses(["a:1", "b:0"], 2379, backend="etcd")
    with pytest.raises(ConfigError, match=r"option address must be strings, got a int"):
        parse_addresses([1], 2379)  # type: ignore[list-item]


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def pem(tmp_path: Path) -> Callable[[str], str]:
    def make(name: str) -> str:
        path = tmp_path / name
        path.write_text("PEM")
        return str(path)

    return make


def test_tls_settings(pem: Callable[[str], str], tmp_path: Path) -> None:
    assert tls_settings({}) == TLSSettings()
    assert (TLSSettings().verify_arg, TLSSettings().cert_arg) == (True, None)
    ca, cert, key = pem("ca.pem"), pem("cert.pem"), pem("key.pem")
    full = tls_settings({"ca": ca, "cert": cert, "key": key, "verify": True})
    assert (full.verify_arg, full.cert_arg) == (ca, (cert, key))
    assert full.read() == (b"PEM", b"PEM", b"PEM")
    assert tls_settings({"cert": Path(cert)}).cert_arg == cert
    assert tls_settings({"ca": ca, "verify": False}).verify_arg is False
    with pytest.raises(ConfigError, match=r"^etcd: option key needs option cert"):
        tls_settings({"key": key}, backend="etcd")
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"^etcd: option ca names '.*nope\.pem', which does not"):
        tls_settings({"ca": missing}, backend="etcd")
    with pytest.raises(ConfigError, match=r"option cert names '.*', which is not a file"):
        tls_settings({"cert": str(tmp_path)})


def test_tls_ssl_context_without_verification() -> None:
    context = TLSSettings(verify=False).ssl_context()
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_NONE)
    assert TLSSettings().ssl_context().verify_mode == ssl.CERT_REQUIRED


# -- one resolution, through sd_core or straight to the backend ----------------------------


def test_resolving_resolved_options_changes_nothing(
    timer: TimerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"TIMER_T": "1s", "TIMER_PASSWORD": SECRET}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    given: Mapping[str, object] = {"wait": "1m", "expire_after": "never", "token": f"{SECRET}\n"}
    once = resolve_options(timer, keywords=given, query={}, environ=environ)
    assert once == resolve_for(timer, once)
    assert (once["timeout"], once["password"]) == (1.0, SECRET)
    assert once["expire_after"] == math.inf
    assert once["token"] == SECRET
    assert resolved(timer, **given) == resolve_for(timer, resolve_for(timer, given))


def test_resolve_for_reads_the_environment_unless_told(
    timer: TimerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMER_T", "2s")
    assert resolve_for(timer, {})["timeout"] == 2.0
    assert resolve_for(timer, {}, environ={})["timeout"] == 5.0
    assert resolve_for(timer, {"timeout": 3})["timeout"] == 3.0


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("timer", {"wiat": 5}),
    ("timer", {"wait": "soon"}),
    ("timer", {"wait": 0}),
    ("timer", {"verify": "maybe"}),
    ("timer", {"token": 5}),
    ("timer", {"password": f"{SECRET}\x07"}),
    ("timer", {"address": 3}),
    ("local", {"colour": "blue"}),
    ("local", {"path": 3}),
]


@pytest.mark.parametrize(("backend", "options"), CALLS)
def test_a_direct_call_gets_the_errors_of_sd_core_instancer(
    timer: TimerBackend, backend: str, options: dict[str, Any]
) -> None:
    direct: TimerBackend | LocalBackend = timer if backend == "timer" else LocalBackend()
    with pytest.raises(ConfigError) as through_core:
        sd_core.instancer(backend, "web", **options)
    with pytest.raises(ConfigError) as straight:
        direct.instancer("web", **options)
    assert str(straight.value) == str(through_core.value)
    assert SECRET not in str(straight.value)


def test_a_path_object_is_a_string_option(timer: TimerBackend, tmp_path: Path) -> None:
    assert LocalBackend().root(path=tmp_path) == tmp_path
    assert LocalBackend().root(path=str(tmp_path)) == tmp_path
    with sd_core.instancer("local", "web", path=tmp_path / "sd"):
        pass
    with pytest.raises(ConfigError, match="local: option 'path' must be a string, got 3"):
        LocalBackend().root(path=3)
