"""EurekaBackend: the ``eureka`` backend as the plugin manager sees it, with its options, and
the reading of its connection options (several server URLs, each with its own credentials)."""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Registration
from sd_core.plugin import (
    Duration,
    Lease,
    Option,
    PushInstancer,
    TLSSettings,
    add_secret,
    connection_options,
    connections,
    parse_address,
    resolve_for,
    tls_settings,
)

from ._mapping import STATUSES, View, check_registration

if TYPE_CHECKING:
    from ._client import EurekaClient
    from ._registrar import EurekaRegistrar

__all__ = ["Connection", "EurekaBackend", "Server", "connection_from", "shared_client"]

DEFAULT_ADDRESS = "http://127.0.0.1:8761/eureka"
DEFAULT_PORT = 8761
"""The port of an address that names neither a scheme nor a port (Spring's default)."""
URL_PORTS: Mapping[str, int] = {"http": 80, "https": 443}
"""The port of a URL that names a scheme but no port, as for any URL."""
SCHEMES = ("http", "https")
INITIAL_STATUSES = ("UP", "STARTING")

CONNECTION_OPTIONS: tuple[Option, ...] = (
    *connection_options(
        default_address=DEFAULT_ADDRESS,
        addresses=True,
        username_password=True,
        timeout="10s",
        server="the Eureka server",
        env={"address": "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"},
        helps={
            "address": "the Eureka servers, tried in order: URLs as Spring's defaultZone "
            "takes them (http://user:password@host:port/eureka), host:port or host (port "
            "8761, path from option path); several: comma-separated or repeated",
            "username": "user name for HTTP basic auth (for the servers whose URL names none)",
            "password": "password for HTTP basic auth",
            "timeout": "how long to wait to connect to a server or for its answer, before "
            "trying the next",
        },
    ),
    Option(
        "scheme",
        str,
        None,
        "http or https for the addresses that name no scheme (default http)",
        choices=SCHEMES,
        connection=True,
    ),
    Option(
        "path",
        str,
        "/eureka",
        "the REST API's path on servers whose address names none (/eureka for Spring "
        "Cloud, /eureka/v2 for Netflix's server)",
        connection=True,
    ),
)
DISCOVERY_OPTIONS: tuple[Option, ...] = (
    Option(
        "refresh",
        Duration,
        "5s",
        "how often the registry is fetched (a delta, or all of it when the delta does not "
        "add up); the smallest of a process's instancers on one connection applies",
        min=0.05,
        max=3600.0,
    ),
    Option(
        "status",
        list,
        ["UP"],
        "statuses an instance must have to be listed (repeat for several)",
        choices=STATUSES,
    ),
    Option(
        "host_from",
        str,
        "ipAddr",
        "the instance field that becomes the host: ipAddr or hostName",
        choices=("ipAddr", "hostName"),
    ),
    Option(
        "secure",
        bool,
        False,
        "discovery: the instances' secure port (securePort); registration: the port is "
        "the secure port",
    ),
    Option(
        "retry_max",
        Duration,
        "10s",
        "longest delay between retries after an error",
        min=0.05,
        max=600.0,
    ),
)
REGISTRATION_OPTIONS: tuple[Option, ...] = (
    Option(
        "initial_status",
        str,
        "UP",
        "registration: the status registered: UP, or STARTING until set_status('UP')",
        choices=INITIAL_STATUSES,
    ),
)


@dataclass(frozen=True)
class Server:
    """One Eureka server: the base URL of its REST API (``scheme://host:port/path``, no
    credentials, no trailing slash) and the basic-auth credentials it is sent."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_options: bool = True
    """Whether the credentials are the options' (the URL named none)."""


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Eureka: the servers in order, TLS and the HTTP timeout."""

    servers: tuple[Server, ...]
    tls: TLSSettings = field(default_factory=TLSSettings)
    timeout: float = 10.0

    def describe(self) -> str:
        """The servers' URLs, for messages (credentials are never in them)."""
        return ", ".join(server.url for server in self.servers)


def new_client(connection: Connection) -> EurekaClient:
    """A client of the servers; httpx is imported here, on first use."""
    from ._client import EurekaClient  # noqa: PLC0415 - keeps `import sd_eureka` light

    return EurekaClient(connection)


def shared_client(connection: Connection) -> Lease[EurekaClient]:
    """A hold on the process's client of ``connection``: every registrar and the poller of
    the same servers, credentials and TLS share one client (one connection pool)."""
    return connections().lease(
        "eureka", dataclasses.asdict(connection), lambda: new_client(connection)
    )


class EurekaBackend:
    """Netflix Eureka (Spring Cloud's server or Netflix's) through its REST API."""

    name = "eureka"
    description = (
        "Eureka servers: one registry poller per connection (full fetch, then deltas); "
        "registration renewed, restored after a 404"
    )
    options: Sequence[Option] = CONNECTION_OPTIONS + DISCOVERY_OPTIONS + REGISTRATION_OPTIONS
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> PushInstancer:
        """Watch the application ``service`` (case does not matter: Eureka keeps app names
        in upper case) through the connection's one registry poller."""
        from ._poller import poller_for  # noqa: PLC0415 - keeps `import sd_eureka` light

        if not isinstance(service, str) or not service.strip():
            raise ConfigError(f"eureka: service must be a non-empty string, got {service!r}")
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        view = View(
            statuses=frozenset(opts["status"] or ()),
            host_from=str(opts["host_from"]),
            secure=bool(opts["secure"]),
        )
        if not view.statuses:
            raise ConfigError(
                "eureka: option status names no status; accepted: " + ", ".join(STATUSES)
            )
        return poller_for(connection).instancer(
            service, view, refresh=float(opts["refresh"]), retry_max=float(opts["retry_max"])
        )

    def registrar(self, registration: Registration, **options: Any) -> EurekaRegistrar:
        """Announce ``registration`` to the servers, renewed every ``ttl / 3``."""
        from ._registrar import EurekaRegistrar  # noqa: PLC0415

        if not isinstance(registration, Registration):
            raise ConfigError(f"eureka: registrar() needs a Registration, got {registration!r}")
        check_registration(registration)
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        return EurekaRegistrar(
            registration,
            connection,
            initial_status=str(opts["initial_status"]),
            secure=bool(opts["secure"]),
        )

    def __repr__(self) -> str:
        return "<EurekaBackend>"


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` that the (resolved) connection options describe."""
    addresses = opts.get("address") or [DEFAULT_ADDRESS]
    if isinstance(addresses, str):
        addresses = [addresses]
    username, password = opts.get("username") or None, opts.get("password") or None
    path = _path(str(opts.get("path") or "/eureka"), "path")
    scheme = opts.get("scheme") or None
    servers: dict[Server, None] = {}
    for item in addresses:
        for part in str(item).split(","):
            if part.strip():
                server = _server(part.strip(), scheme, path, username, password)
                servers[server] = None
    if not servers:
        raise ConfigError(
            "eureka: option address names no server; accepted: http(s)://[user:password@]"
            "host[:port][/path], host:port or host, comma-separated or repeated"
        )
    uses_options = any(server.from_options for server in servers)
    if uses_options and (username is None) != (password is None):
        given, missing = ("username", "password") if username else ("password", "username")
        raise ConfigError(f"eureka: option {given} needs option {missing} (HTTP basic auth)")
    tls = tls_settings(opts, backend="eureka")
    return Connection(servers=tuple(servers), tls=tls, timeout=float(opts.get("timeout") or 10.0))


def _server(
    text: str, scheme: str | None, default_path: str, username: str | None, password: str | None
) -> Server:
    """One server from one address: its URL without credentials, and its credentials (those
    of the URL, else the options'). A password in a URL becomes a secret at once."""
    given_scheme: str | None = None
    from_options = True
    rest = text
    if "://" in rest:
        given_scheme, _, rest = rest.partition("://")
        given_scheme = given_scheme.lower()
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        from_options = False
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user)
        password = urllib.parse.unquote(secret) if colon else ""
        for form in (secret, password, userinfo):
            add_secret(form)
        if given_scheme is None:
            # The core records (and hides) the passwords of URLs only: one written without
            # a scheme would have been logged with the options.
            raise ConfigError(
                "eureka: option address has credentials but no scheme (the value is "
                "hidden): write http://user:password@host:port/eureka, as Spring's "
                "defaultZone takes it"
            )
        if not username or not password:
            raise ConfigError(
                "eureka: option address has credentials without a user name or a password "
                "(the value is hidden): write http://user:password@host:port/eureka"
            )
        if any(ord(char) < 32 or ord(char) == 127 for char in username + password):
            raise ConfigError(
                "eureka: option address has credentials holding a control character (the "
                "value is hidden)"
            )
    if scheme and given_scheme and given_scheme != scheme:
        raise ConfigError(
            f"eureka: option address names {given_scheme}:// but option scheme is {scheme!r}"
        )
    address = parse_address(
        f"{given_scheme}://{netloc}" if given_scheme else netloc,
        URL_PORTS if given_scheme else DEFAULT_PORT,
        schemes=SCHEMES,
        backend="eureka",
    )
    base_path = _path("/" + path, "address") if slash and path.strip("/") else default_path
    url = address.url(default_scheme=scheme or "http") + base_path
    if not from_options or (username is not None and password is not None):
        return Server(url, username, password, from_options=from_options)
    return Server(url)


def _path(path: str, option: str) -> str:
    """A REST base path: a leading ``/``, no trailing one, no query or fragment."""
    if any(char in path for char in "?#") or any(ord(char) <= 32 for char in path):
        raise ConfigError(
            f"eureka: option {option} has a query, a fragment, a space or a control "
            f"character in its path; accepted: a path such as /eureka or /eureka/v2"
        )
    path = "/" + path.strip("/")
    return "" if path == "/" else path
