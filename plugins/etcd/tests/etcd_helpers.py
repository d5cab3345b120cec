"""Helpers for the etcd plugin's tests: timings, types, waits, and a second client of etcd
(its JSON gateway) that changes keys and leases behind the plugin's back."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from pytest_sd import wait_for_event as wait_for
from pytest_sd.etcd import EtcdMember, prefix_range_end

from sd_core import Event, Instancer, Registrar

__all__ = [
    "FAST",
    "Gateway",
    "MakeInstancer",
    "MakeRegistrar",
    "addresses",
    "ids",
    "poll",
    "wait_for",
]

FAST = {"timeout": 2.0, "retry_max": 0.5}
"""Short call timeouts and retry delays, so that the tests are quick."""

MakeInstancer = Callable[..., Instancer]
MakeRegistrar = Callable[..., Registrar]


def ids(event: Event) -> set[str]:
    """The ids of an event's instances."""
    return {instance.id for instance in event.instances}


def addresses(event: Event) -> set[str]:
    """The ``host:port`` of an event's instances."""
    return {instance.address for instance in event.instances}


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.02)


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class Gateway:
    """etcd's v3 JSON gateway on one member: a client of its own, for what the tests do
    behind the plugin's back (an operator, a Go service, a second process)."""

    def __init__(self, member: EtcdMember, token: str | None = None) -> None:
        self.member = member
        self.token = token

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.member.call(path, body, token=self.token)
        if response.status != 200:
            raise AssertionError(f"etcd {path} {body}: {response}")
        answer: dict[str, Any] = response.json()
        return answer

    def put(self, key: str, value: str | bytes, lease: int = 0) -> int:
        """Put ``key``; the new revision."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self._call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> int:
        """Delete ``key``; the new revision."""
        return int(self._call("/v3/kv/deleterange", {"key": _b64(key)})["header"]["revision"])

    def get(self, key: str) -> dict[str, Any] | None:
        """The key-value of ``key`` (``value`` decoded, ``lease`` an int), or None."""
        kvs = self._call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        return {"value": base64.b64decode(kv["value"]), "lease": int(kv.get("lease", 0))}

    def keys(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its value."""
        body = {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix))}
        kvs = self._call("/v3/kv/range", body).get("kvs") or []
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in kvs}

    def revision(self) -> int:
        """The current revision."""
        return int(self._call("/v3/kv/range", {"key": _b64("\0")})["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact the history up to ``revision`` (default: the current one); that revision."""
        revision = self.revision() if revision is None else revision
        self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def grant(self, ttl: int) -> int:
        """A new lease; its id."""
        return int(self._call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def revoke(self, lease: int) -> None:
        """Revoke ``lease`` (its keys are deleted)."""
        self._call("/v3/lease/revoke", {"ID": str(lease)})

    def lease_ttl(self, lease: int) -> int:
        """The TTL ``lease`` has left (-1: etcd does not know it)."""
        return int(self._call("/v3/lease/timetolive", {"ID": str(lease)}).get("TTL", -1))
