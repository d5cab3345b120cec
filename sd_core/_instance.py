"""Instance and Registration: the immutable values discovery is made of."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HOST_ACCEPTED", "Instance", "Registration", "host_problem"]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})

HOST_ACCEPTED = (
    "a hostname (ASCII letters, digits, '-' and '_' in dot-separated labels of 1-63 characters, "
    "no label starting or ending with '-', at most 253 characters), "
    "an IPv4 address, or an IPv6 address (optionally in brackets, optionally with a %zone); "
    "an internationalised name goes in its ASCII (xn--) form"
)
"""What a host may be, as error messages say it."""

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?", re.ASCII)
_DOTTED_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+){3}\.?", re.ASCII)
# RFC 6874 zone ids: unreserved characters (interface names such as eth0, en0.100, br-1a2b).
_ZONE = re.compile(r"[A-Za-z0-9._~-]{1,64}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_HOSTNAME = re.compile(r"[^A-Za-z0-9_.-]", re.ASCII)
_NOT_VISIBLE_ASCII = re.compile(r"[^\x21-\x7e]")


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


@functools.lru_cache(maxsize=4096)
def _host(host: str) -> tuple[str, str | None]:
    """``(normalised host, None)``, or ``(host, what is wrong with it)``."""
    bad = _NOT_VISIBLE_ASCII.search(host)
    if bad is not None:
        return host, f"holds {bad.group()!r}, which no hostname or address holds"
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" not in host:
        if _HOSTNAME.fullmatch(host) is None:
            bad = _NOT_HOSTNAME.search(host)
            if bad is not None:
                return host, f"holds {bad.group()!r}, which no hostname or address holds"
            return host, (
                "is not a hostname: it has an empty label, a label longer than 63 characters "
                "or one starting or ending with '-'"
            )
        if len(host.rstrip(".")) > 253:
            return host, "is a hostname longer than 253 characters"
        if _DOTTED_NUMBERS.fullmatch(host):
            try:
                ipaddress.IPv4Address(host.rstrip("."))
            except ValueError:
                return host, "is not a valid IPv4 address"
        return host, None
    address, percent, zone = host.partition("%")
    if percent and _ZONE.fullmatch(zone) is None:
        return host, "has an IPv6 zone that is not letters, digits and '._~-' (1-64 of them)"
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        if bracketed:
            return host, "is in brackets but is not a valid IPv6 address"
        return host, "has ':' but is not a valid IPv6 address (the port is a field of its own)"
    return host, None


def host_problem(host: str) -> tuple[str, str | None]:
    """Check a host: ``(host, None)``, a bracketed IPv6 address losing its brackets, or
    ``(host, reason)`` where ``reason`` says what is wrong (see :data:`HOST_ACCEPTED`)."""
    if len(host) > 260:  # longer than any hostname or IPv6 literal; not worth caching
        return host, "is longer than 253 characters"
    return _host(host)


def _check_host(owner: str, host: object) -> str:
    if not isinstance(host, str) or not host:
        raise ValueError(f"{owner}.host must be a non-empty string: {HOST_ACCEPTED}; got {host!r}")
    normalised, problem = host_problem(host)
    if problem is not None:
        raise ValueError(f"{owner}.host {_shown(host)} {problem}; accepted: {HOST_ACCEPTED}")
    return normalised


def _check_text(owner: str, name: str, value: object, *, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        what = "a non-empty string" if required else "a string"
        raise ValueError(f"{owner}.{name} must be {what}, got {_shown(value)}")
    if _CONTROL.search(value):
        raise ValueError(
            f"{owner}.{name} must not hold control characters (U+0000-U+001F, U+007F), "
            f"got {_shown(value)}"
        )
    return value


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
    if ":" in host:
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
        ident = _check_text(owner, "id", self.id) or _address(host, port)
        tags = _tags(owner, self.tags)
        meta = _meta(owner, self.meta)
        weight = _check_weight(owner, self.weight)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"Instance.priority must be an integer, got {self.priority!r}")
        _check_text(owner, "service", self.service)
        _check_str(owner, "zone", self.zone)
        setattr_ = object.__setattr__
        setattr_(self, "host", host)
        setattr_(self, "id", ident)
        setattr_(self, "tags", tags)
        setattr_(self, "meta", meta)
        # A total order (sorted tags, not the frozenset, whose < is only a subset test), so
        # that sorting any permutation of a set of instances gives one and the same tuple.
        key = (
            ident,
            host,
            port,
            self.service,
            tuple(sorted(tags)),
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


_order_key: Callable[[Instance], tuple[Any, ...]] = Instance.__dict__["_key"].__get__
"""The total order of ``Instance.__lt__`` as a key for ``sorted()``, read in C: sorting by it
compares the cached key tuples without a call to ``__lt__``, and it raises ``TypeError`` for
anything that is not an :class:`Instance`."""

_hash_of: Callable[[Instance], int] = Instance.__dict__["_hash"].__get__
"""``hash(instance)`` read in C (the cached hash)."""

_id_of: Callable[[Instance], str] = Instance.__dict__["id"].__get__
"""``instance.id`` read in C; ``TypeError`` for anything that is not an :class:`Instance`. The
first field of the order: sorting by it alone gives that order when the ids are unique."""


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
        _check_text(owner, "service", self.service, required=True)
        host = _check_host(owner, self.host)
        port = _check_port(owner, self.port)
        ident = _check_text(owner, "id", self.id) or _address(host, port)
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
        object.__setattr__(self, "host", host)
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
