"""DnsSrvBackend: the ``dnssrv`` backend (alias ``dns``) as the plugin manager sees it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Registration
from sd_core.plugin import (
    Address,
    AsyncWatchInstancer,
    Duration,
    Lease,
    Option,
    TLSSettings,
    connection_options,
    connections,
    parse_address,
    parse_addresses,
    resolve_for,
    tls_settings,
)

from ._instancer import Refresh, dnssrv_instancer
from ._names import published_names, srv_name
from ._registrar import DnsSrvRegistrar
from ._tsig import ALGORITHMS, tsig_key

if TYPE_CHECKING:
    from ._client import DnsClient

__all__ = ["DnsSrvBackend", "Transport"]

DNS_PORT = 53
DOT_PORT = 853
MAX_REFRESH = 86400.0

CONNECTION_OPTIONS: tuple[Option, ...] = (
    *connection_options(
        default_address=None,
        addresses=True,
        tls=True,
        timeout="2s",
        server="the name server",
        helps={
            "address": "the name servers to ask, by IP address: IP:port, [IPv6]:port or IP "
            "(port 53, 853 with tls); several: comma-separated or repeated (default: the "
            "system's resolver, /etc/resolv.conf)",
            "timeout": "how long to wait for each server's answer (a lookup asks each server once)",
        },
    ),
    Option(
        "nameservers",
        list,
        [],
        "the same as address (dnspython's name): the name servers to ask",
        connection=True,
    ),
    Option("tcp", bool, False, "query and update over TCP instead of UDP", connection=True),
    Option(
        "tls",
        bool,
        False,
        "DNS over TLS (RFC 7858) with every server, queries and updates (port 853 by default; "
        "implied by ca, cert or tls_server_name)",
        connection=True,
    ),
    Option(
        "tls_server_name",
        str,
        None,
        "with tls: the name the servers' certificates must hold (default: their IP address)",
        connection=True,
    ),
    Option(
        "server",
        str,
        None,
        "registration: the zone's primary name server, which takes the updates: IP:port "
        "(default: the first of address)",
        connection=True,
    ),
)
DISCOVERY_OPTIONS: tuple[Option, ...] = (
    Option(
        "domain",
        str,
        None,
        "the domain of service names: _<service>._<proto>.<domain> (default: the system "
        "resolver's search domains; to register, the zone)",
    ),
    Option("proto", str, "tcp", "the protocol label of service names: _<service>._<proto>"),
    Option(
        "min_refresh",
        Duration,
        "1s",
        "discovery: the soonest a lookup is repeated, whatever the records' TTL",
        min=0.01,
        max=MAX_REFRESH,
    ),
    Option(
        "max_refresh",
        Duration,
        "5m",
        "discovery: the latest a lookup is repeated, whatever the records' TTL",
        min=0.01,
        max=MAX_REFRESH,
    ),
    Option(
        "retry_max",
        Duration,
        "30s",
        "discovery: the longest delay between retries after an error",
        min=0.1,
        max=600.0,
    ),
)
REGISTRATION_OPTIONS: tuple[Option, ...] = (
    Option("zone", str, None, "registration: the zone updated (default: domain)"),
    Option(
        "key_name",
        str,
        None,
        "registration: the name of the TSIG key signing updates",
        env="SD_DNSSRV_KEY_NAME",
    ),
    Option(
        "key_secret",
        str,
        None,
        "registration: the TSIG key's secret (base64)",
        secret=True,
        env="SD_DNSSRV_KEY_SECRET",
    ),
    Option(
        "key_algorithm",
        str,
        "hmac-sha256",
        "registration: the TSIG key's algorithm",
        choices=ALGORITHMS,
    ),
    Option(
        "key_file",
        str,
        None,
        "registration: a key file as tsig-keygen writes it (instead of key_secret)",
        env="SD_DNSSRV_KEY_FILE",
    ),
    Option(
        "priority",
        int,
        0,
        "registration: the SRV record's priority (lower is preferred)",
        min=0,
        max=65535,
    ),
    Option(
        "target",
        str,
        None,
        "registration: the SRV record's target name (default: the host when it is a name, "
        "else <id>.<service>.<zone>)",
    ),
)


@dataclass(frozen=True)
class Transport:
    """How to talk to the servers: ``timeout`` per answer, over UDP (TCP when an answer is
    truncated), TCP, or TLS (``tls`` set: DNS over TLS, checked against ``server_name``)."""

    timeout: float = 2.0
    tcp: bool = False
    tls: TLSSettings | None = None
    server_name: str | None = None


def new_client(servers: tuple[Address, ...], transport: Transport) -> DnsClient:
    """A client of ``servers``; dnspython is imported here, on first use."""
    from ._client import DnsClient  # noqa: PLC0415 - keeps `import sd_dnssrv` light

    return DnsClient(servers, transport)


def shared_client(servers: tuple[Address, ...], transport: Transport) -> Lease[DnsClient]:
    """A hold on the process's client of these servers: every instancer and registrar that
    asks the same servers the same way shares one."""
    options = {"servers": [a.netloc for a in servers], **asdict(transport)}
    return connections().lease("dnssrv", options, lambda: new_client(servers, transport))


def uses_tls(opts: Mapping[str, Any]) -> bool:
    """Whether the options ask for DNS over TLS: ``tls``, implied by ``ca``, ``cert`` or
    ``tls_server_name``."""
    return any(opts.get(name) for name in ("tls", "ca", "cert", "tls_server_name"))


def transport_of(opts: Mapping[str, Any]) -> Transport:
    """The :class:`Transport` of the (resolved) connection options."""
    tls = tls_settings(opts, backend="dnssrv")
    return Transport(
        timeout=float(opts["timeout"]),
        tcp=bool(opts["tcp"]),
        tls=tls if uses_tls(opts) else None,
        server_name=opts.get("tls_server_name") or None,
    )


class DnsSrvBackend:
    """DNS SRV records (RFC 2782), registered by RFC 2136 dynamic updates signed with TSIG."""

    name = "dnssrv"
    aliases = ("dns",)
    description = "DNS SRV records: TTL-driven lookups; registration by RFC 2136 dynamic update"
    options: Sequence[Option] = CONNECTION_OPTIONS + DISCOVERY_OPTIONS + REGISTRATION_OPTIONS
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> AsyncWatchInstancer:
        """Watch the SRV records of ``service``: a service name (``_<service>._<proto>`` in
        ``domain``) or a full SRV name (``_web._tcp.example.com``, ``web.service.consul``)."""
        opts = resolve_for(self, options)
        servers = nameservers(opts)
        transport = transport_of(opts)
        refresh = refresh_of(opts)
        name = srv_name(service, proto=str(opts["proto"]), domain=opts.get("domain") or None)
        tsig_key(opts)  # not used to discover, but a malformed option is still an error
        lease = shared_client(servers, transport)
        try:
            if not name.endswith(".") and not lease.client.search_domains:
                raise ConfigError(
                    f"dnssrv: {name!r} needs a domain and {lease.client.where} has no search "
                    f"domain: give option domain, or a full SRV name as the service"
                )
            return dnssrv_instancer(
                lease.client,
                service.strip(),
                name,
                refresh,
                retry_max=float(opts["retry_max"]),
                on_close=lease.release,
            )
        except BaseException:
            lease.release()
            raise

    def registrar(self, registration: Registration, **options: Any) -> DnsSrvRegistrar:
        """Publish ``registration`` in a zone by dynamic updates sent to its primary server."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"dnssrv: registrar() needs a Registration, got {registration!r}")
        opts = resolve_for(self, options)
        servers = nameservers(opts)
        transport = transport_of(opts)
        refresh_of(opts)  # not used to register, but a malformed option is still an error
        server = update_server(opts, servers)
        zone = opts.get("zone") or opts.get("domain")
        if not zone:
            raise ConfigError("dnssrv: registration needs option zone (the zone to update)")
        names = published_names(
            registration,
            zone=str(zone),
            domain=opts.get("domain") or None,
            proto=str(opts["proto"]),
            target=opts.get("target") or None,
        )
        if registration.weight > 65535:
            raise ConfigError(
                f"dnssrv: Registration.weight must be at most 65535 (an SRV weight), "
                f"got {registration.weight}"
            )
        key = tsig_key(opts)
        lease = shared_client((server,), transport)
        try:
            return DnsSrvRegistrar(
                registration,
                lease.client,
                names=names,
                server=server,
                key=key,
                priority=int(opts["priority"]),
                on_close=lease.release,
            )
        except BaseException:
            lease.release()
            raise

    def __repr__(self) -> str:
        return "<DnsSrvBackend>"


def _by_ip(address: Address, option: str) -> Address:
    try:
        ipaddress.ip_address(address.host.partition("%")[0])
    except ValueError:
        raise ConfigError(
            f"dnssrv: option {option} names the name server {address.host!r}, which is not an "
            f"IP address; name servers are given by address (IP:port or [IPv6]:port)"
        ) from None
    return address


def nameservers(opts: Mapping[str, Any]) -> tuple[Address, ...]:
    """The name servers of the options ``address`` / ``nameservers`` (one of them), by IP
    address; none: the system's resolver."""
    address, synonym = opts.get("address") or [], opts.get("nameservers") or []
    if address and synonym:
        raise ConfigError("dnssrv: give the name servers as address or as nameservers, not both")
    option = "address" if address else "nameservers"
    values = address or synonym
    if not values:
        return ()
    port = DOT_PORT if uses_tls(opts) else DNS_PORT
    found = parse_addresses(values, port, schemes=(), backend="dnssrv", option=option)
    return tuple(_by_ip(a, option) for a in found)


def update_server(opts: Mapping[str, Any], servers: tuple[Address, ...]) -> Address:
    """Where updates go: option ``server``, else the first name server."""
    text = opts.get("server")
    if text:
        port = DOT_PORT if uses_tls(opts) else DNS_PORT
        address = parse_address(str(text), port, schemes=(), backend="dnssrv", option="server")
        return _by_ip(address, "server")
    if servers:
        return servers[0]
    raise ConfigError(
        "dnssrv: registration needs the zone's primary server: give option server (or address)"
    )


def refresh_of(opts: Mapping[str, Any]) -> Refresh:
    """The :class:`Refresh` of the options ``min_refresh`` and ``max_refresh``."""
    low, high = float(opts["min_refresh"]), float(opts["max_refresh"])
    if low > high:
        raise ConfigError(
            f"dnssrv: min_refresh ({Duration.format(low)}) is longer than max_refresh "
            f"({Duration.format(high)})"
        )
    return Refresh(low, high)
