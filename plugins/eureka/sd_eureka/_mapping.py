"""The mapping of Eureka's data: an instance record to an :class:`Instance`, and a
:class:`Registration` to the instance document Eureka takes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sd_core import ConfigError, Instance, Registration

__all__ = [
    "DATA_CENTER",
    "RESERVED_KEYS",
    "STATUSES",
    "View",
    "app_name",
    "check_registration",
    "instance_document",
    "instance_id",
    "service_key",
    "to_instance",
]

STATUSES = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN")
"""Eureka's instance statuses."""

RESERVED_KEYS = ("zone", "weight", "tags")
"""Metadata keys that carry ``Registration.zone``, ``weight`` and ``tags`` (``zone`` and
``weight`` are what Spring Cloud's zone preference and weighted load balancer read)."""

TAG_SEPARATOR = ","

_PATH_UNSAFE = "/\\;%"
"""Characters that servers refuse or misread in a path segment, even percent-encoded."""

DATA_CENTER = {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
"""Where the instance runs, as Eureka requires it: not in AWS."""


def app_name(service: str) -> str:
    """Eureka's name for the application of ``service``: upper case, as the server keeps it."""
    return service.upper()


def service_key(app: str) -> str:
    """The service name an application's instances are published under (lower case: Eureka
    app names ignore case, and Spring's service ids are written in lower case)."""
    return app.lower()


@dataclass(frozen=True)
class View:
    """Which instances an instancer lists, and how: the statuses it shows, the field the host
    comes from (``ipAddr`` or ``hostName``), and whether the port is the secure one."""

    statuses: frozenset[str] = frozenset({"UP"})
    host_from: str = "ipAddr"
    secure: bool = False

    def describe(self) -> str:
        """Empty for the default view, else the differences, for instancer names."""
        parts = []
        if self.statuses != {"UP"}:
            parts.append("status=" + "+".join(sorted(self.statuses)))
        if self.host_from != "ipAddr":
            parts.append(f"host_from={self.host_from}")
        if self.secure:
            parts.append("secure")
        return f"[{','.join(parts)}]" if parts else ""


def instance_id(record: Mapping[str, Any]) -> str:
    """The id Eureka keys an instance record by: ``instanceId``, else ``hostName`` (what the
    server uses when it was registered without one); ValueError when it has neither."""
    for name in ("instanceId", "hostName"):
        value = record.get(name)
        if isinstance(value, str) and value:
            return value
    raise ValueError("the record has neither instanceId nor hostName")


def to_instance(record: Mapping[str, Any], service: str, view: View) -> Instance | None:
    """The :class:`Instance` of one instance record of ``service``'s application, or None
    when ``view`` does not list it (another status, its port disabled). A record that
    cannot be an instance raises ValueError (or TypeError) saying why."""
    status = record.get("status")
    if not isinstance(status, str):
        raise ValueError(f"its status is {status!r}, not a string")
    if status not in view.statuses:
        return None
    ident = instance_id(record)
    host = record.get(view.host_from)
    if not isinstance(host, str) or not host:
        raise ValueError(f"it has no {view.host_from}")
    port = _port(record, "securePort" if view.secure else "port")
    if port is None:
        return None
    meta = _metadata(record.get("metadata"))
    zone = meta.pop("zone", "")
    weight = 1
    weight_text = meta.get("weight", "1")
    if weight_text.isascii() and weight_text.isdigit():
        weight = int(weight_text)
        meta.pop("weight", None)
    tags = frozenset(tag for tag in meta.pop("tags", "").split(TAG_SEPARATOR) if tag)
    return Instance(
        host, port, id=ident, service=service, tags=tags, meta=meta, weight=weight, zone=zone
    )


def _port(record: Mapping[str, Any], name: str) -> int | None:
    """The port ``name`` of a record when it is enabled, None when disabled."""
    value = record.get(name)
    if not isinstance(value, Mapping):
        raise ValueError(f"its {name} is {value!r}, not an object")
    enabled = value.get("@enabled", "true")
    if enabled not in (True, False, "true", "false"):
        raise ValueError(f"its {name} has @enabled {enabled!r}")
    if enabled in (False, "false"):
        return None
    number = value.get("$")
    if isinstance(number, str) and number.isascii() and number.isdigit():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
        raise ValueError(f"its {name} is {number!r}, not a port number")
    return number


def _metadata(value: object) -> dict[str, str]:
    """Metadata as strings (the server writes numbers as strings; other writers may not);
    the marker Eureka writes for an empty map is dropped."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"its metadata is {value!r}, not an object")
    meta: dict[str, str] = {}
    for key, item in value.items():
        if key == "@class":
            continue
        text = item
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, int | float):
            text = str(item)
        if not isinstance(key, str) or not isinstance(text, str):
            raise ValueError(f"its metadata maps {key!r} to {item!r}, not to a string")
        meta[key] = text
    return meta


def check_registration(registration: Registration) -> None:
    """Refuse, with :class:`ConfigError`, what Eureka could not hold or give back as it was
    registered: reserved metadata keys, tags that the list separator would split."""
    for key in RESERVED_KEYS:
        if key in registration.meta:
            raise ConfigError(
                f"eureka: Registration.meta may not hold the key {key!r}: it carries "
                f"Registration.{key} in the instance's metadata; set that field instead"
            )
    for tag in registration.tags:
        if not tag or TAG_SEPARATOR in tag:
            raise ConfigError(
                f"eureka: tags travel comma-separated in the metadata key 'tags': a tag may "
                f"be neither empty nor hold a comma, got {tag!r}"
            )
    for name, value in (("id", registration.id), ("service", registration.service)):
        bad = next((char for char in _PATH_UNSAFE if char in value), None)
        if bad is not None or value in (".", "..") or value != value.strip() or not value:
            why = f"holds {bad!r}" if bad is not None else "is not usable as a path segment"
            raise ConfigError(
                f"eureka: Registration.{name} travels in the URL path of every renewal, and "
                f"{value!r} {why}; servers refuse or misread '/', '\\', ';' and '%' there "
                f"(Spring Security's firewall, Tomcat's path parameters), and '.', '..' or "
                f"surrounding spaces"
            )


def instance_document(
    registration: Registration, *, status: str, dirty: int, secure: bool, renewal: float
) -> dict[str, Any]:
    """The body of ``POST /apps/{APP}``: ``{"instance": {...}}`` for ``registration``, with
    ``status``, the ``lastDirtyTimestamp`` ``dirty`` (ms; the server ignores a registration
    older than the copy it holds), the port as the secure one or not, and the lease: renewed
    every ``renewal`` seconds, expiring ``Registration.ttl`` after the last renewal."""
    reg = registration
    metadata = dict(reg.meta)
    if reg.zone:
        metadata["zone"] = reg.zone
    if reg.weight != 1:
        metadata["weight"] = str(reg.weight)
    if reg.tags:
        metadata["tags"] = TAG_SEPARATOR.join(sorted(reg.tags))
    on, off = {"$": reg.port, "@enabled": "true"}, {"$": 443, "@enabled": "false"}
    if secure:
        ports = {"port": {"$": 80, "@enabled": "false"}, "securePort": on}
    else:
        ports = {"port": on, "securePort": off}
    return {
        "instance": {
            "instanceId": reg.id,
            "app": app_name(reg.service),
            "hostName": reg.host,
            "ipAddr": reg.host,
            "vipAddress": reg.service,
            "secureVipAddress": reg.service,
            "status": status,
            **ports,
            "dataCenterInfo": DATA_CENTER,
            "leaseInfo": {
                "renewalIntervalInSecs": max(1, round(renewal)),
                "durationInSecs": max(1, math.ceil(reg.ttl)),
            },
            "metadata": metadata,
            "lastDirtyTimestamp": str(dirty),
        }
    }
