"""ConsulBackend: the ``consul`` backend as the plugin manager sees it, with its options."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Option, Registration, WatchInstancer
from sd_core._options import resolve_options
from sd_core._secrets import check_secret

from ._ids import check_path_name, service_id_for
from ._instancer import HealthQuery, consul_instancer
from ._registrar import CheckOptions, ConsulRegistrar

if TYPE_CHECKING:
    from ._client import ConsulClient

__all__ = ["Connection", "ConsulBackend"]

DEFAULT_ADDRESS = "127.0.0.1:8500"
CONSISTENCY = ("default", "stale", "consistent")
SCHEMES = ("http", "https")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION_MAX = (2**63 - 1) / 1e9
"""The longest duration Go can represent (int64 nanoseconds, about 292 years)."""
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_ADDRESS_FORMS = (
    "host:port, [IPv6]:port or http(s)://host:port, with a host name, an IPv4 or an IPv6 "
    "address and a port in 1..65535"
)

CONNECTION_OPTIONS: tuple[Option, ...] = (
    Option(
        "address",
        str,
        DEFAULT_ADDRESS,
        "the agent's HTTP API: host:port, [IPv6]:port, or scheme://host:port",
        env="CONSUL_HTTP_ADDR",
    ),
    Option(
        "token", str, None, "ACL token sent on every call", secret=True, env="CONSUL_HTTP_TOKEN"
    ),
    Option(
        "scheme", str, None, "http or https (default: from the address, else http)", choices=SCHEMES
    ),
    Option("ca", str, None, "CA bundle to verify the agent's certificate", env="CONSUL_CACERT"),
    Option("cert", str, None, "client certificate (PEM) for TLS", env="CONSUL_CLIENT_CERT"),
    Option("key", str, None, "private key of the client certificate", env="CONSUL_CLIENT_KEY"),
    Option("verify", bool, True, "verify the agent's certificate", env="CONSUL_HTTP_SSL_VERIFY"),
    Option(
        "timeout",
        float,
        10.0,
        "seconds to connect or answer (a blocking query adds its wait)",
        min=0.01,
        max=600.0,
    ),
)
DISCOVERY_OPTIONS: tuple[Option, ...] = (
    Option("passing", bool, True, "only instances whose checks all pass"),
    Option("tag", list, [], "a tag instances must have (repeat for several: all must match)"),
    Option("tags", list, [], "tags instances must all have (same as repeating tag)"),
    Option("dc", str, None, "datacenter (default: the agent's)"),
    Option(
        "consistency",
        str,
        "default",
        "read consistency: default, stale or consistent",
        choices=CONSISTENCY,
    ),
    Option("node_meta", list, [], "node metadata filters, each key:value"),
    Option(
        "wait",
        float,
        30.0,
        "seconds a blocking query waits for a change (Consul's limit: 600)",
        min=1.0,
        max=600.0,
    ),
    Option(
        "retry_max",
        float,
        10.0,
        "longest delay between retries after an error (seconds)",
        min=0.1,
        max=600.0,
    ),
)
REGISTRATION_OPTIONS: tuple[Option, ...] = (
    Option(
        "deregister_critical_after",
        str,
        "1m",
        "Consul removes a service critical this long (Go duration; empty: never)",
    ),
    Option("http_check", str, None, "URL of an HTTP health check added to the TTL check"),
    Option("tcp_check", str, None, "host:port of a TCP health check added to the TTL check"),
    Option("check_interval", str, "10s", "interval of the HTTP/TCP check (Go duration)"),
)


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the agent: address, ACL token, TLS and the HTTP timeout."""

    host: str
    port: int
    scheme: str = "http"
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    """False, True, or the path of a CA bundle."""
    cert: str | tuple[str, str] | None = None
    timeout: float = 10.0
    """Seconds to connect or answer; a blocking query adds its wait (+ wait/16) to it."""

    @property
    def url(self) -> str:
        """The base URL of the HTTP API."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def new_client(connection: Connection) -> ConsulClient:
    """A client of the agent; py-consul is imported here, on first use."""
    from ._client import ConsulClient  # noqa: PLC0415 - keeps `import sd_consul` light

    return ConsulClient(connection)


class ConsulBackend:
    """HashiCorp Consul through the local agent's HTTP API."""

    name = "consul"
    description = "Consul agent: blocking health queries; service registration with a TTL check"
    options: Sequence[Option] = CONNECTION_OPTIONS + DISCOVERY_OPTIONS + REGISTRATION_OPTIONS
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> WatchInstancer:
        """Watch ``service``: blocking queries on the agent's health endpoint."""
        if not isinstance(service, str) or not service.strip():
            raise ConfigError(f"consul: service must be a non-empty string, got {service!r}")
        check_path_name("the service name", service)
        opts = self._resolve(options)
        connection = connection_from(opts)
        query = health_query(opts)
        check_options(opts)  # not used to discover, but a malformed option is still an error
        retry_max = float(opts["retry_max"])
        return consul_instancer(lambda: new_client(connection), service, query, retry_max=retry_max)

    def registrar(self, registration: Registration, **options: Any) -> ConsulRegistrar:
        """Announce ``registration`` to the agent, with a TTL check kept alive by the core."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"consul: registrar() needs a Registration, got {registration!r}")
        service_id_for(registration)  # refused before any client exists
        opts = self._resolve(options)
        connection = connection_from(opts)
        checks = check_options(opts)
        health_query(opts)  # not used to register, but a malformed option is still an error
        if registration.weight < 1:
            raise ConfigError(
                f"consul: Registration.weight must be at least 1 (Consul weights are >= 1), "
                f"got {registration.weight}"
            )
        return ConsulRegistrar(registration, new_client(connection), checks)

    def _resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option converted and checked as the core does (types, bounds, choices,
        secrets), defaults filled in for those not given: a direct call of :meth:`instancer`
        or :meth:`registrar` is held to the same rules as one through ``sd_core``."""
        return resolve_options(self, keywords=options, query={}, environ={})

    def __repr__(self) -> str:
        return "<ConsulBackend>"


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` that the connection options describe."""
    raw = opts.get("address") or DEFAULT_ADDRESS
    if not isinstance(raw, str):
        raise ConfigError(f"consul: option address must be {_ADDRESS_FORMS}, got {raw!r}")
    scheme = opts.get("scheme")
    given, host, port = parse_address(raw.strip(), scheme)
    scheme = given or scheme or "http"  # the option's choices are checked by the core
    if port is None:
        port = 8501 if scheme == "https" else 8500
    cert, key = opts.get("cert"), opts.get("key")
    if key and not cert:
        raise ConfigError("consul: option key needs option cert (the client certificate)")
    verify: bool | str = bool(opts.get("verify", True))
    if verify and opts.get("ca"):
        verify = str(opts["ca"])
    return Connection(
        host=host,
        port=port,
        scheme=scheme,
        token=_token(opts.get("token")),
        verify=verify,
        cert=(str(cert), str(key)) if cert and key else (str(cert) if cert else None),
        timeout=float(opts.get("timeout") or 10.0),
    )


def _token(value: object) -> str | None:
    """The ACL token, stripped of surrounding whitespace and remembered as a secret; one that
    cannot be sent in an HTTP header is refused (its value is never shown)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError("consul: option 'token' must be a string (its value is hidden)")
    token = check_secret("consul", "token", value)
    if not token.isascii():
        raise ConfigError(
            "consul: option 'token' holds a character outside ASCII; accepted: printable ASCII "
            "(it is sent in the X-Consul-Token header; the value is hidden: the option is secret)"
        )
    return token


def parse_address(address: str, scheme: object = None) -> tuple[str | None, str, int | None]:
    """``(scheme or None, host, port or None)`` of an address option; :class:`ConfigError`
    naming the accepted forms for anything else."""

    def bad(why: str, shown: str | None = address) -> ConfigError:
        got = f", got {shown!r}" if shown is not None else ""
        return ConfigError(f"consul: option address must be {_ADDRESS_FORMS} ({why}){got}")

    if "@" in address:  # credentials: never echo them
        raise bad("credentials do not belong in it; use option token", None)
    given: str | None = None
    rest = address
    if "://" in rest:
        given, _, rest = rest.partition("://")
        given = given.lower()
        if given not in SCHEMES:
            raise bad(f"scheme {given}:// is not http:// or https://")
        if isinstance(scheme, str) and scheme.lower() != given:
            raise ConfigError(
                f"consul: the address says {given}:// but option scheme is {scheme!r}"
            )
    if rest.endswith("/"):
        rest = rest[:-1]
    if not rest:
        raise bad("no host")
    if any(char in rest for char in "/?#"):
        raise bad("a path, query or fragment is not part of it")
    port_text: str | None
    if rest.startswith("["):
        inside, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise bad("an unclosed '['")
        inside = inside.replace("%25", "%")  # a zone, as URLs write it (RFC 6874)
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise bad(f"{inside!r} between brackets is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise bad("only :port may follow ']'")
        host, port_text = inside, (after[1:] if after else None)
    elif rest.count(":") > 1:
        raise bad("an IPv6 address goes between brackets: [::1]:8500")
    else:
        host, colon, port_part = rest.partition(":")
        port_text = port_part if colon else None
        if not _valid_host(host):
            raise bad(f"{host!r} is not a host name, an IPv4 or an IPv6 address")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise bad(f"port {port_text!r} is not a number")
        port = int(port_text)
        if port == 0:
            raise bad("port 0 does not mean the default port: leave the port out for that")
        if port > 65535:
            raise bad(f"port {port} is out of range")
    return given, host, port


def _valid_host(host: str) -> bool:
    """A host name (RFC 1123 labels; underscores tolerated, as Docker names use them) or an
    IPv4 address."""
    if not host or len(host) > 253 or not host.isascii():
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return True
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like an IPv4 address but is not one (999.1.1.1, 1.2.3)
    return all(_HOST_LABEL.match(label) for label in labels)


def health_query(opts: Mapping[str, Any]) -> HealthQuery:
    """The :class:`HealthQuery` that the discovery options describe."""
    tags = [*(opts.get("tag") or ()), *(opts.get("tags") or ())]
    node_meta: dict[str, str] = {}
    for item in opts.get("node_meta") or ():
        key, sep, value = str(item).partition(":")
        if not sep or not key:
            raise ConfigError(f"consul: node_meta entries must be key:value, got {item!r}")
        node_meta[key] = value
    return HealthQuery(
        passing=bool(opts.get("passing", True)),
        tags=tuple(dict.fromkeys(str(tag) for tag in tags)),
        dc=opts.get("dc") or None,
        consistency=str(opts.get("consistency") or "default"),
        node_meta=node_meta,
        wait=float(opts.get("wait") or 30.0),
    )


def go_duration(text: str) -> float:
    """Seconds in a Go duration (``"1m30s"``, ``"500ms"``); ValueError if it is not one Go
    accepts (no sign: negative durations mean nothing here)."""
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(text)
    if total > _GO_DURATION_MAX:
        raise ValueError(text)
    return total


def check_options(opts: Mapping[str, Any]) -> CheckOptions:
    """The :class:`CheckOptions` that the registration options describe."""
    dead_after = opts.get("deregister_critical_after") or None
    interval = str(opts.get("check_interval") or "10s")
    for name, value in (("deregister_critical_after", dead_after), ("check_interval", interval)):
        if value is None:
            continue
        try:
            seconds = go_duration(str(value))
        except ValueError:
            raise ConfigError(
                f"consul: option {name} must be a Go duration like 30s, 1m or 1h30m "
                f"(units ns, us, ms, s, m, h; at most 2562047h), got {value!r}"
            ) from None
        if seconds <= 0:
            raise ConfigError(f"consul: option {name} must be longer than 0, got {value!r}")
    http_check, tcp_check = opts.get("http_check") or None, opts.get("tcp_check") or None
    if http_check and not str(http_check).startswith(("http://", "https://")):
        raise ConfigError(
            f"consul: http_check must be an http:// or https:// URL, got {http_check!r}"
        )
    if tcp_check:
        try:
            given, _, port = parse_address(str(tcp_check))
        except ConfigError:
            given, port = None, None
        if given is not None or port is None:
            raise ConfigError(
                f"consul: tcp_check must be host:port or [IPv6]:port, got {tcp_check!r}"
            )
    return CheckOptions(
        deregister_critical_after=dead_after,
        http_check=http_check,
        tcp_check=tcp_check,
        check_interval=interval,
    )
