"""How to reach etcd: the endpoints, TLS, credentials and timeout the connection options say,
and the process's one client for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError
from sd_core.plugin import Address, Lease, TLSSettings, connections, parse_addresses, tls_settings

if TYPE_CHECKING:
    from ._client import EtcdClient

__all__ = ["DEFAULT_PORT", "Connection", "connection_from", "shared_client"]

DEFAULT_PORT = 2379
SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Connection:
    """The endpoints of one etcd cluster (tried in order, the next one when one fails), TLS
    (None: plain gRPC), the user and password, and the timeout of each call."""

    endpoints: tuple[Address, ...]
    tls: TLSSettings | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 5.0

    def url(self, endpoint: Address) -> str:
        """``http(s)://host:port`` of ``endpoint``, as messages name it."""
        return endpoint.url("https" if self.tls else "http")

    def identity(self) -> dict[str, Any]:
        """What tells two connections apart (the key of the shared client)."""
        return {
            "endpoints": tuple(str(endpoint.netloc) for endpoint in self.endpoints),
            "tls": None if self.tls is None else (self.tls.ca, self.tls.cert, self.tls.key),
            "username": self.username,
            "password": self.password,
            "timeout": self.timeout,
        }


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` that the (resolved) connection options describe.

    TLS is on when an address says ``https://`` or a CA or client certificate is given; an
    address saying ``http://`` then is an error, and so is ``verify=false``, which gRPC does
    not offer (it always verifies the server's certificate)."""
    endpoints = parse_addresses(opts.get("address"), DEFAULT_PORT, schemes=SCHEMES, backend="etcd")
    tls = tls_settings(opts, backend="etcd")
    secure = bool(tls.ca or tls.cert) or any(e.scheme == "https" for e in endpoints)
    if secure:
        plain = [str(e) for e in endpoints if e.scheme == "http"]
        if plain:
            raise ConfigError(
                f"etcd: TLS is on (an https:// address, or option ca or cert), but "
                f"{', '.join(plain)} says http://; give every address as https:// or host:port"
            )
        if not tls.verify:
            raise ConfigError(
                "etcd: option verify=false is not supported: gRPC always verifies the server's "
                "certificate; give the CA that signed it with option ca"
            )
    username, password = opts.get("username") or None, opts.get("password") or None
    if password and not username:
        raise ConfigError("etcd: option password needs option username")
    return Connection(
        endpoints=endpoints,
        tls=tls if secure else None,
        # Without a password there is nothing to authenticate with (as in etcd's Go client):
        # etcd then knows a TLS client by its certificate's common name.
        username=username if password else None,
        password=password,
        timeout=float(opts.get("timeout") or 5.0),
    )


def shared_client(connection: Connection) -> Lease[EtcdClient]:
    """A hold on the process's client of ``connection``: every instancer and registrar with
    the same connection options shares one client, so one gRPC channel."""

    def open_client() -> EtcdClient:
        from ._client import EtcdClient  # noqa: PLC0415 - aetcd and grpc load on first use

        return EtcdClient(connection)

    return connections().lease("etcd", connection.identity(), open_client)
