"""Registration: an SRV record (and its target's address) by RFC 2136 dynamic update."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from sd_core import Registration, RegistrationError
from sd_core.plugin import Address, BaseRegistrar, scrub

from ._names import PublishedNames

if TYPE_CHECKING:
    from ._client import DnsClient
    from ._tsig import TsigKey

__all__ = ["DnsSrvRegistrar", "record_ttl"]


def record_ttl(ttl: float) -> int:
    """The TTL of the published records: the registration's, in whole seconds (at least 1)."""
    return max(1, math.ceil(ttl))


class DnsSrvRegistrar(BaseRegistrar):
    """Publishes a registration in a zone by dynamic updates (RFC 2136) signed with TSIG.

    ``register()`` adds the SRV record ``priority weight port target`` at
    ``_<service>._<proto>.<domain>`` and, when the registration's host is an IP address, the
    target's A or AAAA record (replacing what the target held), both with the registration's
    TTL; it also removes older SRV records of the same target (another port, weight or
    priority). Every keepalive (``ttl / 3``) reads both back from the server, and when one is
    missing (an operator deleted it, the zone was reloaded without it) writes them again and
    counts a restore. ``deregister()`` deletes exactly what it added.
    """

    backend_name = "dnssrv"

    def __init__(
        self,
        registration: Registration,
        client: DnsClient,
        *,
        names: PublishedNames,
        server: Address,
        key: TsigKey | None,
        priority: int = 0,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(registration)
        self.client = client
        self.names = names
        self.server = server
        self._key = key
        self._release = on_close if on_close is not None else client.close
        self.ttl = record_ttl(registration.ttl)
        """The TTL of the published records, in seconds."""
        self.srv = f"{priority} {registration.weight} {registration.port} {names.target}".lower()
        """The SRV record's data, as DNS writes it."""

    @property
    def backend_id(self) -> str:
        """``target:port``, the instance id discovery reports for this registration (when its
        target has one address)."""
        return f"{self.names.target.rstrip('.')}:{self.registration.port}"

    async def _backend_register(self) -> None:
        names = self.names
        stale = [
            (names.owner, "SRV", rdata)
            for rdata in await self._read("register", names.owner, "SRV")
            if rdata != self.srv and rdata.split()[-1:] == [names.target.lower()]
        ]
        delete: list[tuple[str, str, str | None]] = [*stale]
        add = [(names.owner, self.ttl, "SRV", self.srv)]
        if names.address is not None:
            delete += [(names.target, "A", None), (names.target, "AAAA", None)]
            add.append((names.target, self.ttl, names.address_type, names.address))
        await self._update("register", delete, add)

    async def _backend_keepalive(self) -> bool:
        names = self.names
        if self.srv not in await self._read("renew", names.owner, "SRV"):
            return False
        if names.address is None:
            return True
        published = await self._read("renew", names.target, names.address_type)
        return names.address.lower() in published

    async def _backend_deregister(self) -> None:
        names = self.names
        delete: list[tuple[str, str, str | None]] = [(names.owner, "SRV", self.srv)]
        if names.address is not None:
            delete.append((names.target, names.address_type, names.address))
        await self._update("deregister", delete, [])

    def _backend_close(self) -> None:
        self._release()

    # -- the calls, their errors made RegistrationError ----------------------------------------
    async def _read(self, what: str, name: str, rdtype: str) -> tuple[str, ...]:
        try:
            return await self.client.records(self.server, name, rdtype, self._key)
        except Exception as exc:
            raise self._error(what, exc, f"reading the {rdtype} records of {name}") from exc

    async def _update(
        self,
        what: str,
        delete: list[tuple[str, str, str | None]],
        add: list[tuple[str, int, str, str]],
    ) -> None:
        try:
            await self.client.update(
                self.server, self.names.zone, self._key, delete=delete, add=add
            )
        except Exception as exc:
            raise self._error(what, exc, f"updating zone {self.names.zone}") from exc

    def _error(self, what: str, exc: Exception, step: str) -> RegistrationError:
        why = self.client.explain(exc, self.server, self.names.zone, self._key)
        service = self.registration.service
        return RegistrationError(
            scrub(f"dnssrv: could not {what} {service} {self.backend_id} ({step}): {why}")
        )
