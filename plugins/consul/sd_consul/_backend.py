"""ConsulBackend: the ``consul`` backend as the plugin manager sees it, with its options."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Option, Registration, WatchInstancer

from ._instancer import HealthQuery, consul_instancer
from ._registrar import CheckOptions, ConsulRegistrar

if TYPE_CHECKING:
    from ._client import ConsulClient

__all__ = ["Connection", "ConsulBackend"]

DEFAULT_ADDRESS = "127.0.0.1:8500"
CONSISTENCY = ("default", "stale", "consistent")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")

CONNECTION_OPTIONS: tuple[Option, ...] = (
    Option(
        "address",
        str,
        DEFAULT_ADDRESS,
        "the agent's HTTP API: host:port, or scheme://host:port",
        env="CONSUL_HTTP_ADDR",
    ),
    Option(
        "token", str, None, "ACL token sent on every call", secret=True, env="CONSUL_HTTP_TOKEN"
    ),
    Option("scheme", str, None, "http or https (default: from the address, else http)"),
    Option("ca", str, None, "CA bundle to verify the agent's certificate", env="CONSUL_CACERT"),
    Option("cert", str, None, "client certificate (PEM) for TLS", env="CONSUL_CLIENT_CERT"),
    Option("key", str, None, "private key of the client certificate", env="CONSUL_CLIENT_KEY"),
    Option("verify", bool, True, "verify the agent's certificate", env="CONSUL_HTTP_SSL_VERIFY"),
    Option("timeout", float, 10.0, "seconds to connect or answer (a blocking query adds its wait)"),
)
DISCOVERY_OPTIONS: tuple[Option, ...] = (
    Option("passing", bool, True, "only instances whose checks all pass"),
    Option("tag", list, [], "a tag instances must have (repeat for several: all must match)"),
    Option("tags", list, [], "tags instances must all have (same as repeating tag)"),
    Option("dc", str, None, "datacenter (default: the agent's)"),
    Option("consistency", str, "default", "read consistency: default, stale or consistent"),
    Option("node_meta", list, [], "node metadata filters, each key:value"),
    Option("wait", float, 30.0, "seconds a blocking query waits for a change"),
    Option("retry_max", float, 10.0, "longest delay between retries after an error (seconds)"),
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

    def scrub(self, text: str) -> str:
        """``text`` with the token, should it appear, replaced."""
        return text.replace(self.token, "<token>") if self.token else text


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
        opts = self._resolve(options)
        connection = connection_from(opts)
        query = health_query(opts)
        retry_max = _positive(opts, "retry_max")
        return consul_instancer(lambda: new_client(connection), service, query, retry_max=retry_max)

    def registrar(self, registration: Registration, **options: Any) -> ConsulRegistrar:
        """Announce ``registration`` to the agent, with a TTL check kept alive by the core."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"consul: registrar() needs a Registration, got {registration!r}")
        opts = self._resolve(options)
        connection = connection_from(opts)
        checks = check_options(opts)
        if registration.weight < 1:
            raise ConfigError(
                f"consul: Registration.weight must be at least 1 (Consul weights are >= 1), "
                f"got {registration.weight}"
            )
        return ConsulRegistrar(registration, new_client(connection), checks)

    def _resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in for options not given (the plugin manager gives all of them)."""
        declared = {option.name: option for option in self.options}
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise ConfigError(
                f"consul: unknown option(s) {', '.join(unknown)}; "
                f"accepted options: {', '.join(declared)}"
            )
        resolved = {name: option.default for name, option in declared.items()}
        resolved.update({k: v for k, v in options.items() if v is not None})
        return resolved

    def __repr__(self) -> str:
        return "<ConsulBackend>"


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` that the connection options describe."""
    address = str(opts.get("address") or DEFAULT_ADDRESS).strip()
    scheme = opts.get("scheme")
    if "://" in address:
        given, _, address = address.partition("://")
        if scheme and scheme != given:
            raise ConfigError(
                f"consul: the address says {given}:// but option scheme is {scheme!r}"
            )
        scheme = given
    scheme = (scheme or "http").lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"consul: scheme must be http or https, got {scheme!r}")
    parts = urllib.parse.urlsplit("//" + address.rstrip("/"))
    try:
        port = parts.port or (8501 if scheme == "https" else 8500)
    except ValueError:
        raise ConfigError(f"consul: address {address!r} must be host:port") from None
    if not parts.hostname or parts.path or parts.username:
        raise ConfigError(f"consul: address {address!r} must be host:port")
    cert, key = opts.get("cert"), opts.get("key")
    if key and not cert:
        raise ConfigError("consul: option key needs option cert (the client certificate)")
    verify: bool | str = bool(opts.get("verify", True))
    if verify and opts.get("ca"):
        verify = str(opts["ca"])
    return Connection(
        host=parts.hostname,
        port=port,
        scheme=scheme,
        token=opts.get("token") or None,
        verify=verify,
        cert=(str(cert), str(key)) if cert and key else (str(cert) if cert else None),
        timeout=_positive(opts, "timeout"),
    )


def health_query(opts: Mapping[str, Any]) -> HealthQuery:
    """The :class:`HealthQuery` that the discovery options describe."""
    consistency = str(opts.get("consistency") or "default")
    if consistency not in CONSISTENCY:
        raise ConfigError(
            f"consul: consistency must be one of {', '.join(CONSISTENCY)}, got {consistency!r}"
        )
    tags = [*(opts.get("tag") or ()), *(opts.get("tags") or ())]
    node_meta: dict[str, str] = {}
    for item in opts.get("node_meta") or ():
        key, sep, value = str(item).partition(":")
        if not sep or not key:
            raise ConfigError(f"consul: node_meta entries must be key:value, got {item!r}")
        node_meta[key] = value
    wait = _positive(opts, "wait")
    if wait > 600:
        raise ConfigError(f"consul: wait is at most 600 seconds (Consul's limit), got {wait:g}")
    return HealthQuery(
        passing=bool(opts.get("passing", True)),
        tags=tuple(dict.fromkeys(str(tag) for tag in tags)),
        dc=opts.get("dc") or None,
        consistency=consistency,
        node_meta=node_meta,
        wait=wait,
    )


def check_options(opts: Mapping[str, Any]) -> CheckOptions:
    """The :class:`CheckOptions` that the registration options describe."""
    dead_after = opts.get("deregister_critical_after") or None
    interval = str(opts.get("check_interval") or "10s")
    for name, value in (("deregister_critical_after", dead_after), ("check_interval", interval)):
        if value is not None and not _DURATION.match(str(value)):
            raise ConfigError(
                f"consul: option {name} must be a Go duration like 30s or 1m, got {value!r}"
            )
    http_check, tcp_check = opts.get("http_check") or None, opts.get("tcp_check") or None
    if http_check and not str(http_check).startswith(("http://", "https://")):
        raise ConfigError(
            f"consul: http_check must be an http:// or https:// URL, got {http_check!r}"
        )
    if tcp_check and ":" not in str(tcp_check):
        raise ConfigError(f"consul: tcp_check must be host:port, got {tcp_check!r}")
    return CheckOptions(
        deregister_critical_after=dead_after,
        http_check=http_check,
        tcp_check=tcp_check,
        check_interval=interval,
    )


def _positive(opts: Mapping[str, Any], name: str) -> float:
    value = opts.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"consul: option {name} must be a number of seconds > 0, got {value!r}")
    return float(value)
