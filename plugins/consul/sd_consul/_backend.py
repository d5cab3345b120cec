"""ConsulBackend: the ``consul`` backend as the plugin manager sees it, with its options."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Registration
from sd_core._backend import Duration, format_duration
from sd_core._connection_options import (
    connection_options,
    parse_address,
    tls_settings,
)
from sd_core._connections import Lease, connections
from sd_core._options import resolve_for
from sd_core.plugin import Option, WatchInstancer

from ._ids import check_path_name, service_id_for
from ._instancer import HealthQuery, consul_instancer
from ._registrar import CheckOptions, ConsulRegistrar

if TYPE_CHECKING:
    from ._client import ConsulClient

__all__ = ["Connection", "ConsulBackend"]

DEFAULT_ADDRESS = "127.0.0.1:8500"
DEFAULT_PORTS: Mapping[str, int] = {"http": 8500, "https": 8501}
CONSISTENCY = ("default", "stale", "consistent")
SCHEMES = ("http", "https")
GO_DURATION_MAX = 2562047 * 3600.0
"""The longest duration sent to Consul: 2562047h, about the most Go can hold (int64 ns)."""

CONNECTION_OPTIONS: tuple[Option, ...] = (
    *connection_options(
        default_address=DEFAULT_ADDRESS,
        token=True,
        timeout="10s",
        server="the agent",
        env={
            "address": "CONSUL_HTTP_ADDR",
            "token": "CONSUL_HTTP_TOKEN",
            "ca": "CONSUL_CACERT",
            "cert": "CONSUL_CLIENT_CERT",
            "key": "CONSUL_CLIENT_KEY",
            "verify": "CONSUL_HTTP_SSL_VERIFY",
        },
        helps={
            "address": "the agent's HTTP API: host:port, [IPv6]:port, host (port 8500, 8501 "
            "for https) or http(s)://host:port",
            "token": "ACL token sent on every call",
            "timeout": "how long to wait to connect or for an answer (a blocking query adds "
            "its wait)",
        },
    ),
    Option(
        "scheme",
        str,
        None,
        "http or https (default: from the address, else http)",
        choices=SCHEMES,
        connection=True,
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
        Duration,
        "30s",
        "how long a blocking query waits for a change (Consul's limit: 10m)",
        min=1.0,
        max=600.0,
    ),
    Option(
        "retry_max",
        Duration,
        "10s",
        "longest delay between retries after an error",
        min=0.1,
        max=600.0,
    ),
)
REGISTRATION_OPTIONS: tuple[Option, ...] = (
    Option(
        "deregister_critical_after",
        Duration,
        "1m",
        "Consul removes a service critical this long (never: it does not)",
        min=1e-9,
        max=GO_DURATION_MAX,
        never=True,
    ),
    Option("http_check", str, None, "URL of an HTTP health check added to the TTL check"),
    Option("tcp_check", str, None, "host:port of a TCP health check added to the TTL check"),
    Option(
        "check_interval",
        Duration,
        "10s",
        "interval of the HTTP/TCP check",
        min=1e-9,
        max=GO_DURATION_MAX,
    ),
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


def shared_client(connection: Connection) -> Lease[ConsulClient]:
    """A hold on the process's client of the agent ``connection`` describes: every instancer
    and registrar with the same connection options shares one client."""
    return connections().lease(
        "consul", dataclasses.asdict(connection), lambda: new_client(connection)
    )


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
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        query = health_query(opts)
        check_options(opts)  # not used to discover, but a malformed option is still an error
        retry_max = float(opts["retry_max"])
        lease = shared_client(connection)
        try:
            return consul_instancer(
                lease.client, service, query, retry_max=retry_max, on_close=lease.release
            )
        except BaseException:
            lease.release()
            raise

    def registrar(self, registration: Registration, **options: Any) -> ConsulRegistrar:
        """Announce ``registration`` to the agent, with a TTL check kept alive by the core."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"consul: registrar() needs a Registration, got {registration!r}")
        service_id_for(registration)  # refused before any client exists
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        checks = check_options(opts)
        health_query(opts)  # not used to register, but a malformed option is still an error
        if registration.weight < 1:
            raise ConfigError(
                f"consul: Registration.weight must be at least 1 (Consul weights are >= 1), "
                f"got {registration.weight}"
            )
        lease = shared_client(connection)
        try:
            return ConsulRegistrar(registration, lease.client, checks, on_close=lease.release)
        except BaseException:
            lease.release()
            raise

    def __repr__(self) -> str:
        return "<ConsulBackend>"


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` that the (resolved) connection options describe."""
    scheme = opts.get("scheme")
    address = parse_address(
        opts.get("address") or DEFAULT_ADDRESS,
        DEFAULT_PORTS,
        schemes=SCHEMES,
        default_scheme=scheme or "http",
        backend="consul",
    )
    if address.scheme and scheme and address.scheme != scheme:
        raise ConfigError(
            f"consul: the address says {address.scheme}:// but option scheme is {scheme!r}"
        )
    tls = tls_settings(opts, backend="consul")
    return Connection(
        host=address.host,
        port=address.port,
        scheme=address.scheme or scheme or "http",
        token=_token(opts.get("token")),
        verify=tls.verify_arg,
        cert=tls.cert_arg,
        timeout=float(opts.get("timeout") or 10.0),
    )


def _token(token: str | None) -> str | None:
    """The ACL token (the core stripped and checked it); one that cannot be sent in an HTTP
    header is refused (its value is never shown)."""
    if not token:
        return None
    if not token.isascii():
        raise ConfigError(
            "consul: option 'token' holds a character outside ASCII; accepted: printable ASCII "
            "(it is sent in the X-Consul-Token header; the value is hidden: the option is secret)"
        )
    return token


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


def check_options(opts: Mapping[str, Any]) -> CheckOptions:
    """The :class:`CheckOptions` that the (resolved) registration options describe, with
    durations written as Consul reads them (Go durations); "never" sends none."""
    dead_after = float(opts.get("deregister_critical_after") or 60.0)
    interval = float(opts.get("check_interval") or 10.0)
    http_check, tcp_check = opts.get("http_check") or None, opts.get("tcp_check") or None
    if http_check and not str(http_check).startswith(("http://", "https://")):
        raise ConfigError(
            f"consul: http_check must be an http:// or https:// URL, got {http_check!r}"
        )
    if tcp_check:
        try:
            parse_address(str(tcp_check), None, schemes=(), option="tcp_check")
        except ConfigError:
            raise ConfigError(
                f"consul: tcp_check must be host:port or [IPv6]:port, got {tcp_check!r}"
            ) from None
    return CheckOptions(
        deregister_critical_after=None if dead_after == math.inf else format_duration(dead_after),
        http_check=http_check,
        tcp_check=tcp_check,
        check_interval=format_duration(interval),
    )
