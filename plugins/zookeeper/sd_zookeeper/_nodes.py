"""The data of an instance node: what we write (Spring Cloud Zookeeper's or Curator's JSON, or
go-kit's ``host:port``) and how we read every form the peers write.

Curator's service discovery (``curator-x-discovery``, which Spring Cloud Zookeeper builds on)
keeps one node per instance at ``<base>/<service>/<id>`` holding compact JSON::

    {"name":"web","id":"…","address":"10.0.0.5","port":8080,"sslPort":null,
     "payload":{"@class":"…","…":…},"registrationTimeUTC":1700000000000,
     "serviceType":"DYNAMIC","uriSpec":{"parts":[…]}}

The payload names its Java class in ``@class``: Spring Cloud Zookeeper's is
``org.springframework.cloud.zookeeper.discovery.ZookeeperInstance`` with string ``metadata``;
a Curator program with a ``Map`` payload writes ``java.util.LinkedHashMap`` and the entries.
go-kit's ``sd/zk`` registrar writes the bare instance string, ``host:port``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sd_core import ConfigError, Instance, Registration
from sd_core.plugin import parse_address

__all__ = [
    "FORMATS",
    "MAP_CLASS",
    "RESERVED_META",
    "SPRING_CLASS",
    "STATUS_KEY",
    "STATUS_UP",
    "URI_SPEC",
    "Decoded",
    "check_node_name",
    "decode",
    "encode",
]

FORMATS = ("spring", "curator", "hostport")
"""What a registrar may write: Spring Cloud Zookeeper's JSON, Curator's JSON with a Map
payload, or go-kit's plain ``host:port``."""
SPRING_CLASS = "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"
MAP_CLASS = "java.util.LinkedHashMap"
STATUS_KEY = "instance_status"
STATUS_UP = "UP"
"""Spring Cloud Zookeeper's status metadata: its load balancer keeps the instances whose
``instance_status`` is ``UP`` (any case) or missing; so do we."""
RESERVED_META = ("tags", "weight", "zone", STATUS_KEY)
"""Metadata keys that carry ``Registration.tags`` (comma-separated), ``weight``, ``zone``
(the keys Spring Cloud LoadBalancer reads for weight and zone) and the status."""
URI_SPEC: Mapping[str, Any] = {
    "parts": [
        {"value": "scheme", "variable": True},
        {"value": "://", "variable": False},
        {"value": "address", "variable": True},
        {"value": ":", "variable": False},
        {"value": "port", "variable": True},
    ]
}
"""Spring Cloud Zookeeper's default ``uriSpec``, ``{scheme}://{address}:{port}``, as Curator
writes it."""

# ZooKeeper refuses these in a path (PathUtils.validatePath), and "/" separates nodes.
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff/]")


def check_node_name(what: str, name: str) -> str:
    """``name`` if it can be one node of a ZooKeeper path, else :class:`ConfigError`."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"zookeeper: {what} must be a non-empty string, got {name!r}")
    if name in (".", "..") or _REFUSED.search(name):
        raise ConfigError(
            f"zookeeper: {what} {name!r} cannot be a ZooKeeper node name: it is '.' or '..', "
            f"or holds '/' or a character ZooKeeper refuses (controls, U+D800-U+F8FF, "
            f"U+FFF0-U+FFFF)"
        )
    return name


def _meta(registration: Registration, status: str) -> dict[str, str]:
    """The string metadata written for ``registration``: its meta, plus tags, weight and zone
    under the reserved keys (only when they differ from the defaults), and the status."""
    clash = sorted(key for key in registration.meta if key in RESERVED_META)
    if clash:
        raise ConfigError(
            f"zookeeper: Registration.meta may not hold {', '.join(map(repr, clash))}: these "
            f"keys carry Registration.tags, weight, zone and the status (set_status); set "
            f"those instead"
        )
    bad = sorted(tag for tag in registration.tags if "," in tag or not tag.strip())
    if bad:
        raise ConfigError(
            f"zookeeper: tags are written comma-separated in the metadata key 'tags': a tag "
            f"may not be empty nor hold ',', got {bad!r}"
        )
    meta = dict(registration.meta)
    if registration.tags:
        meta["tags"] = ",".join(sorted(registration.tags))
    if registration.weight != 1:
        meta["weight"] = str(registration.weight)
    if registration.zone:
        meta["zone"] = registration.zone
    meta[STATUS_KEY] = status
    return meta


def encode(
    registration: Registration, form: str, *, status: str = STATUS_UP, now: float | None = None
) -> bytes:
    """The node data of ``registration`` in ``form`` (one of :data:`FORMATS`), as the peers
    write it: compact JSON with null fields written out (the status in the metadata, as
    Spring Cloud Zookeeper writes it), or ``host:port``."""
    if form == "hostport":
        return registration.address.encode()
    meta = _meta(registration, status)
    payload: dict[str, Any]
    if form == "spring":
        payload = {
            "@class": SPRING_CLASS,
            "id": registration.id,
            "name": registration.service,
            "metadata": meta,
        }
    elif form == "curator":
        payload = {"@class": MAP_CLASS, **meta}
    else:
        raise ConfigError(f"zookeeper: format must be one of {', '.join(FORMATS)}, got {form!r}")
    document = {
        "name": registration.service,
        "id": registration.id,
        "address": registration.host,
        "port": registration.port,
        "sslPort": None,
        "payload": payload,
        "registrationTimeUTC": int((time.time() if now is None else now) * 1000),
        "serviceType": "DYNAMIC",
        "uriSpec": URI_SPEC,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Decoded:
    """What one node's data gave: an instance, or why it is skipped (``hidden``: on purpose,
    its status is not UP)."""

    instance: Instance | None = None
    skipped: str = ""
    hidden: bool = False


def decode(service: str, name: str, data: bytes) -> Decoded:
    """The instance in node ``name`` of ``service``: Curator / Spring Cloud Zookeeper JSON
    (any payload), or go-kit's plain ``host:port``. Its id is the node's name."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Decoded(skipped="its data is not UTF-8 text")
    if not text:
        return Decoded(skipped="it holds no data")
    try:
        if text.startswith("{"):
            instance, status = _from_json(service, name, text)
            if status and status.upper() != STATUS_UP:
                return Decoded(skipped=f"its {STATUS_KEY} is {status!r}", hidden=True)
            return Decoded(instance)
        return Decoded(_from_host_port(service, name, text))
    except (ValueError, TypeError, ConfigError) as exc:
        return Decoded(skipped=str(exc))


def _from_host_port(service: str, name: str, text: str) -> Instance:
    try:
        address = parse_address(text, None, schemes=(), backend="zookeeper", option="node data")
    except ConfigError:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(
            f"its data is neither Curator / Spring Cloud Zookeeper JSON nor host:port: {shown!r}"
        ) from None
    return Instance(address.host, address.port, id=name, service=service)


def _from_json(service: str, name: str, text: str) -> tuple[Instance, str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"its data is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("its JSON is not an object")
    address = document.get("address")
    if not isinstance(address, str) or not address:
        raise ValueError("its JSON has no address")
    port = document.get("port")
    if port is None:
        port = document.get("sslPort")
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValueError(f"its JSON has no port (port: {document.get('port')!r})")
    if document.get("enabled") is False:
        raise ValueError("it is disabled (enabled: false)")
    meta = _payload_meta(document.get("payload"))
    status = meta.pop(STATUS_KEY, "").strip()
    tags = frozenset(t.strip() for t in meta.pop("tags", "").split(",") if t.strip())
    zone = meta.pop("zone", "")
    weight = 1
    if "weight" in meta:
        try:
            weight = int(meta["weight"])
        except ValueError:
            pass  # a weight we cannot read stays in the metadata, where the peer put it
        else:
            if weight >= 0:
                del meta["weight"]
            else:
                weight = 1
    instance = Instance(
        address, port, id=name, service=service, tags=tags, meta=meta, weight=weight, zone=zone
    )
    return instance, status


def _payload_meta(payload: object) -> dict[str, str]:
    """String metadata from a payload: Spring's ``metadata``; else the payload's own
    entries (a Map payload, or any other class's scalar fields), ``@class`` left out."""
    if not isinstance(payload, dict):
        return {}
    source = payload.get("metadata")
    if not isinstance(source, dict):
        source = payload
    meta: dict[str, str] = {}
    for key, value in source.items():
        if key == "@class" or not isinstance(key, str) or value is None:
            continue
        if isinstance(value, str):
            meta[key] = value
        elif isinstance(value, bool | int | float):
            meta[key] = json.dumps(value)
    return meta
