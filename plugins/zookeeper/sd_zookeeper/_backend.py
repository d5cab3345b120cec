"""ZooKeeperBackend: the ``zookeeper`` backend (alias ``zk``) as the plugin manager sees it,
with its options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Registration
from sd_core.plugin import (
    Duration,
    Lease,
    Option,
    PushInstancer,
    connection_options,
    connections,
    parse_addresses,
    resolve_for,
    tls_settings,
)

from ._acl import AUTH_NODE_ACL, AUTH_PARENT_ACL, OPEN_ACL, AclEntry, parse_acl
from ._client import Connection
from ._instancer import zookeeper_instancer
from ._nodes import FORMATS, check_node_name, encode
from ._registrar import ZooKeeperRegistrar

if TYPE_CHECKING:
    from ._client import ZooKeeperClient

__all__ = ["ZooKeeperBackend", "connection_from", "node_path"]

DEFAULT_PORT = 2181
DEFAULT_BASE_PATH = "/services"

CONNECTION_OPTIONS: tuple[Option, ...] = (
    *connection_options(
        default_address=f"127.0.0.1:{DEFAULT_PORT}",
        addresses=True,
        username_password=True,
        timeout="10s",
        server="ZooKeeper",
        helps={
            "address": "the ensemble's servers, each host:port, [IPv6]:port or host (port "
            "2181); several: comma-separated or repeated",
            "username": "digest user (ZooKeeper's addauth digest user:password)",
            "password": "digest password",
            "timeout": "how long to wait to connect, or for the answer to a request",
        },
    ),
    Option("tls", bool, False, "connect with TLS (implied by ca or cert)", connection=True),
    Option(
        "chroot",
        str,
        "",
        "a path under which every other path lies (the connect string's /chroot)",
        connection=True,
    ),
    Option(
        "session_timeout",
        Duration,
        "10s",
        "the session timeout asked for (the server keeps it within 2 and 20 ticks): how long "
        "a registration outlives a dead process",
        min=1.0,
        max=600.0,
        connection=True,
    ),
)
OTHER_OPTIONS: tuple[Option, ...] = (
    Option(
        "base_path",
        str,
        DEFAULT_BASE_PATH,
        "the parent of the services' nodes: <base_path>/<service>/<id> (Spring Cloud "
        "Zookeeper's discovery root, Curator's basePath)",
    ),
    Option(
        "format",
        str,
        "spring",
        "registration: the node data written: spring (Spring Cloud Zookeeper's JSON), curator "
        "(Curator's JSON with a Map payload) or hostport (go-kit's host:port)",
        choices=FORMATS,
    ),
    Option(
        "acl",
        list,
        [],
        "registration: the instance node's ACL, entries scheme:id:perms (default: "
        "world:anyone:cdrwa; with credentials auth::cdrwa,world:anyone:r)",
    ),
    Option(
        "parent_acl",
        list,
        [],
        "registration: the ACL of the parents it creates (default: as acl without "
        "credentials; with them auth::cdrwa,world:anyone:r)",
    ),
)


def shared_client(connection: Connection) -> Lease[ZooKeeperClient]:
    """A hold on the process's client (session) for ``connection``."""

    def open_client() -> ZooKeeperClient:
        from ._client import ZooKeeperClient  # noqa: PLC0415 - keeps `import sd_zookeeper` light

        return ZooKeeperClient(connection)

    return connections().lease("zookeeper", dataclasses.asdict(connection), open_client)


class ZooKeeperBackend:
    """Apache ZooKeeper: children watches, ephemeral nodes in the layout of Curator's service
    discovery (Spring Cloud Zookeeper), one session per connection."""

    name = "zookeeper"
    aliases = ("zk",)
    description = "ZooKeeper: children watches; ephemeral nodes as Curator / Spring Cloud write"
    options: Sequence[Option] = CONNECTION_OPTIONS + OTHER_OPTIONS
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> PushInstancer:
        """Watch ``service``: the children of ``<base_path>/<service>``."""
        check_node_name("the service name", service)
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        path = node_path(opts, service)
        _acls(opts, connection)  # not used to discover, but a malformed option is an error
        lease = shared_client(connection)
        try:
            return zookeeper_instancer(lease.client, service, path, on_close=lease.release)
        except BaseException:
            lease.release()
            raise

    def registrar(self, registration: Registration, **options: Any) -> ZooKeeperRegistrar:
        """Announce ``registration`` as an ephemeral node ``<base_path>/<service>/<id>``."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"zookeeper: registrar() needs a Registration, got {registration!r}")
        check_node_name("the service name", registration.service)
        check_node_name("Registration.id", registration.id)
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        path = node_path(opts, registration.service, registration.id)
        acl, parent_acl = _acls(opts, connection)
        form = str(opts["format"])
        encode(registration, form)
        lease = shared_client(connection)
        try:
            return ZooKeeperRegistrar(
                registration,
                lease.client,
                path=path,
                form=form,
                acl=acl,
                parent_acl=parent_acl,
                on_close=lease.release,
            )
        except BaseException:
            lease.release()
            raise

    def __repr__(self) -> str:
        return "<ZooKeeperBackend>"


def _path(value: str, option: str) -> str:
    """A normalised absolute path ("" for the root), each of its nodes checked."""
    text = str(value or "").strip()
    if not text or text == "/":
        return ""
    if not text.startswith("/"):
        raise ConfigError(f"zookeeper: option {option} must start with '/', got {text!r}")
    parts = [part for part in text.split("/") if part]
    for part in parts:
        check_node_name(f"a node of option {option}", part)
    return "/" + "/".join(parts)


def node_path(opts: Mapping[str, Any], service: str, instance_id: str | None = None) -> str:
    """``<base_path>/<service>`` or ``<base_path>/<service>/<id>``."""
    path = f"{_path(opts.get('base_path', DEFAULT_BASE_PATH), 'base_path')}/{service}"
    return path if instance_id is None else f"{path}/{instance_id}"


def connection_from(opts: Mapping[str, Any]) -> Connection:
    """The :class:`Connection` the (resolved) connection options describe."""
    addresses = parse_addresses(opts.get("address"), DEFAULT_PORT, schemes=(), backend="zookeeper")
    username, password = opts.get("username") or None, opts.get("password") or None
    if bool(username) != bool(password):
        raise ConfigError(
            "zookeeper: digest authentication needs both options username and password"
        )
    if username and ":" in username:
        raise ConfigError(f"zookeeper: option username may not hold ':', got {username!r}")
    tls = tls_settings(opts, backend="zookeeper")
    use_tls = bool(opts.get("tls")) or bool(tls.ca or tls.cert)
    return Connection(
        hosts=tuple(address.netloc for address in addresses),
        chroot=_path(opts.get("chroot", ""), "chroot"),
        username=username,
        password=password,
        tls=tls if use_tls else None,
        timeout=float(opts.get("timeout") or 10.0),
        session_timeout=float(opts.get("session_timeout") or 10.0),
    )


def _acls(
    opts: Mapping[str, Any], connection: Connection
) -> tuple[tuple[AclEntry, ...], tuple[AclEntry, ...]]:
    """The ACLs of the instance node and of the parents a registrar creates."""
    authenticated = connection.username is not None
    acl_given = list(opts.get("acl") or [])
    acl = parse_acl(acl_given or (AUTH_NODE_ACL if authenticated else OPEN_ACL), "acl")
    parent_given = list(opts.get("parent_acl") or [])
    if parent_given:
        parent_acl = parse_acl(parent_given, "parent_acl")
    elif authenticated:
        parent_acl = parse_acl(AUTH_PARENT_ACL, "parent_acl")
    else:
        parent_acl = acl if acl_given else parse_acl(OPEN_ACL, "parent_acl")
    for entries, option in ((acl, "acl"), (parent_acl, "parent_acl")):
        if not authenticated and any(entry.scheme == "auth" for entry in entries):
            raise ConfigError(
                f"zookeeper: option {option} has an auth:: entry, which needs credentials "
                f"(options username and password)"
            )
    return acl, parent_acl
