"""Instance and Registration: the immutable values discovery is made of."""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Instance", "Registration"]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


def _check_host(owner: str, host: object) -> str:
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"{owner}.host must be a non-empty string, got {host!r}")
    return host


def _check_port(owner: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{owner}.port must be an integer in 1..65535, got {port!r}")
    return port


def _check_weight(owner: str, weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise ValueError(f"{owner}.weight must be an integer >= 0, got {weight!r}")
    return weight


def _check_str(owner: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{name} must be a string, got {value!r}")
    return value


def _tags(owner: str, tags: Iterable[str]) -> frozenset[str]:
    if isinstance(tags, str):
        raise ValueError(f"{owner}.tags must be an iterable of strings, not a string: {tags!r}")
    result = frozenset(tags)
    for tag in result:
        if not isinstance(tag, str):
            raise ValueError(f"{owner}.tags must hold strings, got {tag!r}")
    return result


def _meta(owner: str, meta: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(meta, Mapping):
        raise ValueError(f"{owner}.meta must be a mapping of strings, got {meta!r}")
    if not meta:
        return _EMPTY
    copy = dict(meta)
    for key, value in copy.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"{owner}.meta must map strings to strings, got {key!r}: {value!r}")
    return types.MappingProxyType(copy)


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True, eq=False)
class Instance:
    """One reachable instance of a service, as a backend reports it.

    ``id`` is unique within the service and defaults to ``host:port``. Instances compare
    and hash by value, so a set of them can be compared cheaply.
    """

    host: str
    port: int
    id: str = ""
    service: str = ""
    tags: frozenset[str] = frozenset()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    weight: int = 1
    priority: int = 0
    zone: str = ""
    _key: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "Instance"
        host = _check_host(owner, self.host)
        port = _check_port(owner, self.port)
        ident = _check_str(owner, "id", self.id) or _address(host, port)
        tags = _tags(owner, self.tags)
        meta = _meta(owner, self.meta)
        weight = _check_weight(owner, self.weight)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"Instance.priority must be an integer, got {self.priority!r}")
        _check_str(owner, "service", self.service)
        _check_str(owner, "zone", self.zone)
        setattr_ = object.__setattr__
        setattr_(self, "id", ident)
        setattr_(self, "tags", tags)
        setattr_(self, "meta", meta)
        key = (
            ident,
            host,
            port,
            self.service,
            tags,
            tuple(sorted(meta.items())),
            weight,
            self.priority,
            self.zone,
        )
        setattr_(self, "_key", key)
        setattr_(self, "_hash", hash(key))

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 host in brackets."""
        return _address(self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Instance:
            return NotImplemented
        return self._hash == other._hash and self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Instance) -> bool:
        return self._key < other._key

    def __repr__(self) -> str:
        parts = [f"{self.address}", f"id={self.id!r}"]
        if self.service:
            parts.append(f"service={self.service!r}")
        if self.tags:
            parts.append(f"tags={sorted(self.tags)!r}")
        if self.meta:
            parts.append(f"meta={dict(self.meta)!r}")
        if self.weight != 1:
            parts.append(f"weight={self.weight}")
        if self.priority:
            parts.append(f"priority={self.priority}")
        if self.zone:
            parts.append(f"zone={self.zone!r}")
        return f"Instance({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registrar announces: one instance of ``service`` at ``host:port``.

    ``id`` defaults to ``host:port``; ``ttl`` (seconds) bounds how long the backend keeps
    the registration without a keepalive.
    """

    service: str
    host: str
    port: int
    id: str = ""
    tags: frozenset[str] = frozenset()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    ttl: float = 10.0
    weight: int = 1
    zone: str = ""

    def __post_init__(self) -> None:
        owner = "Registration"
        if not isinstance(self.service, str) or not self.service.strip():
            raise ValueError(
                f"Registration.service must be a non-empty string, got {self.service!r}"
            )
        host = _check_host(owner, self.host)
        port = _check_port(owner, self.port)
        ident = _check_str(owner, "id", self.id) or _address(host, port)
        ttl = self.ttl
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise ValueError(f"Registration.ttl must be a number of seconds > 0, got {ttl!r}")
        _check_weight(owner, self.weight)
        _check_str(owner, "zone", self.zone)
        object.__setattr__(self, "id", ident)
        object.__setattr__(self, "tags", _tags(owner, self.tags))
        object.__setattr__(self, "meta", _meta(owner, self.meta))
        object.__setattr__(self, "ttl", float(ttl))

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 host in brackets."""
        return _address(self.host, self.port)

    def instance(self) -> Instance:
        """The instance a discovering client should see for this registration."""
        return Instance(
            host=self.host,
            port=self.port,
            id=self.id,
            service=self.service,
            tags=self.tags,
            meta=self.meta,
            weight=self.weight,
            zone=self.zone,
        )
