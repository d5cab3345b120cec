"""The data in etcd: where an instance's key is, what its value says, and the instance a
key and value make.

An instance of service ``web`` with id ``a`` lives at ``<prefix>/web/a`` (default prefix
``/services``). Its value is our JSON object (``host``, ``port``, ``tags``, ``meta``,
``weight``, ``zone``), or the plain ``host:port`` that go-kit's etcdv3 registrar writes and
its instancer reads. Both are read; which one is written is the ``value`` option.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sd_core import ConfigError, Instance, Registration
from sd_core.plugin import parse_address

__all__ = [
    "DEFAULT_PREFIX",
    "VALUE_FORMATS",
    "check_service",
    "decode",
    "encode",
    "instance_key",
    "service_prefix",
]

DEFAULT_PREFIX = "/services"
VALUE_FORMATS = ("json", "address")
"""``json``: our JSON object; ``address``: the plain ``host:port`` go-kit reads."""


def check_service(service: object) -> str:
    """``service`` if it can name a key prefix; :class:`ConfigError` otherwise.

    A ``/`` is refused: the instances of ``a`` are the keys under ``<prefix>/a/``, so a
    service ``a/b`` would show among them."""
    if not isinstance(service, str) or not service.strip():
        raise ConfigError(f"etcd: the service must be a non-empty string, got {service!r}")
    if "/" in service:
        raise ConfigError(
            f"etcd: the service {service!r} holds a '/', which separates the service from the "
            f"instance id in keys (<prefix>/<service>/<id>)"
        )
    return service


def service_prefix(prefix: str, service: str) -> str:
    """The key prefix of a service's instances: ``<prefix>/<service>/`` (a prefix ending
    with ``/`` is not doubled; an empty prefix puts services at the top of the keyspace)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{service}/"


def instance_key(prefix: str, registration: Registration) -> str:
    """The key of a registration: ``<prefix>/<service>/<id>``."""
    return service_prefix(prefix, registration.service) + registration.id


def encode(registration: Registration, value_format: str) -> bytes:
    """The value written for ``registration``: our JSON object, or ``host:port``."""
    if value_format == "address":
        return registration.address.encode()
    document = {
        "host": registration.host,
        "port": registration.port,
        "tags": sorted(registration.tags),
        "meta": dict(registration.meta),
        "weight": registration.weight,
        "zone": registration.zone,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def decode(service: str, instance_id: str, value: bytes) -> Instance:
    """The instance that ``value`` (under the key of ``instance_id``) describes; ValueError
    saying why when it is neither our JSON object nor ``host:port``."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise ValueError("the value is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"the value is not valid JSON ({exc})") from None
        return _from_json(service, instance_id, document)
    try:
        address = parse_address(stripped, None, schemes=())
    except ConfigError:
        raise ValueError(
            f"the value {_shown(text)} is neither a JSON object nor host:port"
        ) from None
    return Instance(address.host, address.port, id=instance_id, service=service)


def _from_json(service: str, instance_id: str, document: Mapping[str, Any]) -> Instance:
    host, port = document.get("host"), document.get("port")
    if not isinstance(host, str) or not host:
        raise ValueError("the JSON value has no host (a string)")
    if not isinstance(port, int) or isinstance(port, bool):
        raise ValueError("the JSON value has no port (a number)")
    tags = document.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("the JSON value's tags are not a list of strings")
    meta = document.get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("the JSON value's meta is not an object of strings")
    weight = document.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool):
        raise ValueError("the JSON value's weight is not a whole number")
    zone = document.get("zone") or ""
    if not isinstance(zone, str):
        raise ValueError("the JSON value's zone is not a string")
    return Instance(
        host,
        port,
        id=instance_id,
        service=service,
        tags=frozenset(tags),
        meta=meta,
        weight=weight,
        zone=zone,
    )


def _shown(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 5]}…' ({len(text)} characters)"
