"""ACLs of the nodes a registrar creates, written as ZooKeeper's CLI writes them.

An entry is ``scheme:id:perms``: ``world:anyone:r``, ``auth::cdrwa`` (every identity the
client authenticated as), ``digest:user:base64(sha1(user:password)):rw``, ``ip:10.0.0.0/8:r``;
perms are letters of ``c`` (create children), ``d`` (delete children), ``r`` (read), ``w``
(write data), ``a`` (admin: set the ACL). Deleting a node needs ``d`` on its *parent*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sd_core import ConfigError

__all__ = ["AUTH_NODE_ACL", "AUTH_PARENT_ACL", "OPEN_ACL", "AclEntry", "parse_acl"]

_PERMS = {"r": 1, "w": 2, "c": 4, "d": 8, "a": 16}
_SCHEMES = ("world", "auth", "digest", "ip", "x509", "sasl", "super")

OPEN_ACL = ("world:anyone:cdrwa",)
"""What Curator and Spring Cloud Zookeeper create without auth: open to anyone."""
AUTH_NODE_ACL = ("auth::cdrwa", "world:anyone:r")
"""An instance node when authenticated: ours to change, anyone's to read."""
AUTH_PARENT_ACL = ("auth::cdrwa", "world:anyone:r")
"""A parent created when authenticated: others can read and list it, but neither add nor
remove children (so they cannot delete our instance nodes)."""


@dataclass(frozen=True)
class AclEntry:
    """One ACL entry: scheme, id and a permission mask (kazoo's ``Permissions`` bits)."""

    scheme: str
    id: str
    perms: int

    def to_kazoo(self) -> Any:
        """The entry as kazoo takes it (``kazoo.security.ACL``)."""
        from kazoo.security import ACL, Id  # type: ignore[import-untyped]  # noqa: PLC0415

        return ACL(self.perms, Id(self.scheme, self.id))


def parse_acl(entries: Iterable[str], option: str) -> tuple[AclEntry, ...]:
    """The entries of an ACL option (each ``scheme:id:perms``); :class:`ConfigError` naming
    ``option`` and the accepted form for a malformed one."""
    parsed: list[AclEntry] = []
    for entry in entries:
        for part in str(entry).split(","):
            text = part.strip()
            if text:
                parsed.append(_entry(text, option))
    if not parsed:
        raise ConfigError(f"zookeeper: option {option} names no ACL entry")
    return tuple(dict.fromkeys(parsed))


def _entry(text: str, option: str) -> AclEntry:
    accepted = (
        "scheme:id:perms, such as world:anyone:r, auth::cdrwa, digest:user:HASH:cdrwa or "
        f"ip:10.0.0.0/8:r, scheme one of {', '.join(_SCHEMES)}, perms letters of cdrwa"
    )
    scheme, sep, rest = text.partition(":")
    ident, sep2, perms = rest.rpartition(":")
    if not sep or not sep2 or scheme not in _SCHEMES:
        raise ConfigError(f"zookeeper: option {option} has entry {text!r}; accepted: {accepted}")
    if not perms or any(letter not in _PERMS for letter in perms):
        raise ConfigError(
            f"zookeeper: option {option} has entry {text!r} whose permissions {perms!r} are not "
            f"letters of cdrwa; accepted: {accepted}"
        )
    if scheme == "world" and ident != "anyone":
        raise ConfigError(f"zookeeper: option {option}: the world scheme's only id is 'anyone'")
    mask = 0
    for letter in perms:
        mask |= _PERMS[letter]
    return AclEntry(scheme, ident, mask)
