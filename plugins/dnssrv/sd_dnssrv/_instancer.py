"""Discovery: SRV lookups re-run when their TTL runs out, mapped to instances."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sd_core import Instance
from sd_core.plugin import AsyncWatchContext, AsyncWatchInstancer, Backoff, logger

if TYPE_CHECKING:
    from ._client import AddressAnswer, DnsClient, SrvAnswer

__all__ = ["Refresh", "SrvWatch", "dnssrv_instancer", "to_instances"]

log = logger("sd_dnssrv")

_CONCURRENT_LOOKUPS = 16
"""Address lookups of targets in flight at once, per watch."""


@dataclass(frozen=True)
class Refresh:
    """When to look again: at the answer's TTL, kept within ``minimum`` and ``maximum``."""

    minimum: float = 1.0
    maximum: float = 300.0

    def after(self, ttl: float | None) -> float:
        """Seconds until the next lookup of an answer whose records live ``ttl`` seconds
        (None: the answer gave no TTL, as an empty answer without an SOA)."""
        if ttl is None:
            return self.minimum
        return min(max(ttl, self.minimum), self.maximum)


def to_instances(
    service: str, answer: SrvAnswer, resolved: Mapping[str, AddressAnswer]
) -> tuple[list[Instance], dict[str, str], float | None]:
    """The instances of an SRV answer, why each record left out was left out (by
    ``target:port``), and the TTL of the records used (the smallest).

    A record's addresses come from the answer's additional section, else from ``resolved``
    (by lowercase target). One instance per address: ``host`` the address, ``priority`` and
    ``weight`` from the record, the target in ``meta["target"]``, ``id`` = ``target:port``
    (``target:port/address`` for a target with several addresses). A record whose target is
    ``.`` ("not available here", RFC 2782) is no instance; one with port 0 or a target without
    an address is left out and reported.
    """
    instances: dict[str, Instance] = {}
    skipped: dict[str, str] = {}
    ttls = [answer.ttl] if answer.ttl is not None else []
    additional = answer.additional or {}
    for record in answer.records:
        if not record.target:
            continue
        key = f"{record.target}:{record.port}"
        if record.port == 0:
            skipped[key] = "its port is 0"
            continue
        found = additional.get(record.target.lower()) or resolved.get(record.target.lower())
        if found is None or not found.addresses:
            skipped[key] = "its target has no A or AAAA record"
            continue
        if found.ttl is not None:
            ttls.append(found.ttl)
        several = len(found.addresses) > 1
        for address in found.addresses:
            instance_id = f"{key}/{address}" if several else key
            try:
                instance = Instance(
                    address,
                    record.port,
                    id=instance_id,
                    service=service,
                    meta={"target": record.target},
                    weight=record.weight,
                    priority=record.priority,
                )
            except ValueError as exc:
                skipped[key] = str(exc)
                continue
            instances.setdefault(instance_id, instance)
    return list(instances.values()), skipped, min(ttls) if ttls else None


class SrvWatch:
    """The watch coroutine of one SRV name: look up, publish, sleep until the TTL runs out.

    Errors propagate, so that the core sends one error event and retries with backoff; the
    next answer publishes the whole set again. Records left out are warned about once each
    while they last.
    """

    def __init__(self, client: DnsClient, service: str, name: str, refresh: Refresh) -> None:
        self.client = client
        self.service = service
        self.name = name
        self.refresh = refresh
        self._warned: dict[str, str] = {}

    async def __call__(self, ctx: AsyncWatchContext) -> None:
        while True:  # cancelled when the instancer stops
            instances, ttl = await self.lookup()
            ctx.publish(instances)
            await ctx.sleep(self.refresh.after(ttl))

    async def lookup(self) -> tuple[list[Instance], float | None]:
        """One resolution: the SRV records, then the addresses of the targets that the
        additional section did not give; the instances and the TTL of what was used."""
        answer = await self.client.srv(self.name)
        additional = answer.additional or {}
        targets = sorted(
            {
                r.target.lower()
                for r in answer.records
                if r.target and r.port and r.target.lower() not in additional
            }
        )
        limit = asyncio.Semaphore(_CONCURRENT_LOOKUPS)

        async def addresses(target: str) -> AddressAnswer:
            async with limit:
                return await self.client.addresses(target)

        found = await asyncio.gather(*(addresses(t) for t in targets))
        instances, skipped, ttl = to_instances(
            self.service, answer, dict(zip(targets, found, strict=True))
        )
        self._warn(skipped)
        return instances, ttl

    def _warn(self, skipped: dict[str, str]) -> None:
        for key, reason in skipped.items():
            if self._warned.get(key) != reason:
                log.warning(
                    "dnssrv: skipping SRV record %s of %s (service %r): %s",
                    key,
                    self.name,
                    self.service,
                    reason,
                )
        self._warned = skipped


def dnssrv_instancer(
    client: DnsClient,
    service: str,
    name: str,
    refresh: Refresh,
    *,
    retry_max: float = 30.0,
    on_close: Callable[[], object] | None = None,
) -> AsyncWatchInstancer:
    """An :class:`AsyncWatchInstancer` of the SRV records of ``name``, reported as instances
    of ``service``; ``on_close`` runs once it has stopped (the release of a shared client)."""
    return AsyncWatchInstancer(
        SrvWatch(client, service, name, refresh),
        name=f"dnssrv:{name}",
        backoff=Backoff(initial=min(0.2, retry_max), maximum=retry_max),
        on_close=on_close,
    )
