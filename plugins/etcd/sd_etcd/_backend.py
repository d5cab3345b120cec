"""EtcdBackend: the ``etcd`` backend as the plugin manager sees it, with its options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sd_core import ConfigError, Registration
from sd_core.plugin import (
    AsyncWatchInstancer,
    Duration,
    Option,
    connection_options,
    logger,
    resolve_for,
)

from ._connection import connection_from, shared_client
from ._instancer import etcd_instancer
from ._layout import DEFAULT_PREFIX, VALUE_FORMATS, check_service, service_prefix
from ._registrar import EtcdRegistrar

__all__ = ["EtcdBackend"]

log = logger("sd_etcd")

CONNECTION_OPTIONS: tuple[Option, ...] = connection_options(
    default_address="127.0.0.1:2379",
    addresses=True,
    tls=True,
    username_password=True,
    timeout="5s",
    server="etcd",
    env={
        "address": "ETCDCTL_ENDPOINTS",
        "password": "ETCDCTL_PASSWORD",
        "ca": "ETCDCTL_CACERT",
        "cert": "ETCDCTL_CERT",
        "key": "ETCDCTL_KEY",
    },
    helps={
        "address": "etcd endpoints (several: the members of a cluster, tried in order): "
        "host:port, [IPv6]:port, host (port 2379), http://host:port or https://host:port; "
        "comma-separated or repeated",
        "timeout": "how long to wait for etcd to answer a call (and to connect)",
        "verify": "must stay true: gRPC always verifies etcd's certificate (false is refused)",
    },
)
OPTIONS: tuple[Option, ...] = (
    *CONNECTION_OPTIONS,
    Option(
        "prefix",
        str,
        DEFAULT_PREFIX,
        "key prefix: instances are the keys <prefix>/<service>/<id>",
    ),
    Option(
        "value",
        str,
        "json",
        "registration: what the key's value is: json (host, port, tags, meta, weight, zone) or "
        "address (plain host:port, what go-kit's etcdv3 instancer reads)",
        choices=VALUE_FORMATS,
    ),
    Option(
        "retry_max",
        Duration,
        "10s",
        "discovery: longest delay between retries after an error",
        min=0.1,
        max=600.0,
    ),
)


class EtcdBackend:
    """etcd v3 through its gRPC API (aetcd)."""

    name = "etcd"
    description = "etcd v3: prefix reads and watches; registration under a kept-alive lease"
    options: Sequence[Option] = OPTIONS
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> AsyncWatchInstancer:
        """Watch ``service``: the keys under ``<prefix>/<service>/``."""
        check_service(service)
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        prefix = service_prefix(str(opts["prefix"]), service)
        lease = shared_client(connection)
        try:
            return etcd_instancer(
                lease.client,
                service,
                prefix,
                retry_max=float(opts["retry_max"]),
                on_close=lease.release,
            )
        except BaseException:
            lease.release()
            raise

    def registrar(self, registration: Registration, **options: Any) -> EtcdRegistrar:
        """Announce ``registration``: its key under a lease the registrar keeps alive."""
        if not isinstance(registration, Registration):
            raise ConfigError(f"etcd: registrar() needs a Registration, got {registration!r}")
        check_service(registration.service)
        opts = resolve_for(self, options)
        connection = connection_from(opts)
        value_format = str(opts["value"])
        if value_format == "address":
            _warn_unwritten(registration)
        lease = shared_client(connection)
        try:
            return EtcdRegistrar(
                registration,
                lease.client,
                prefix=str(opts["prefix"]),
                value_format=value_format,
                on_close=lease.release,
            )
        except BaseException:
            lease.release()
            raise

    def __repr__(self) -> str:
        return "<EtcdBackend>"


def _warn_unwritten(registration: Registration) -> None:
    lost = [
        name
        for name, given in (
            ("tags", registration.tags),
            ("meta", registration.meta),
            ("weight", registration.weight != 1),
            ("zone", registration.zone),
        )
        if given
    ]
    if lost:
        log.warning(
            "etcd: value=address writes only host:port: the %s of %s %s are not written",
            ", ".join(lost),
            registration.service,
            registration.id,
        )
