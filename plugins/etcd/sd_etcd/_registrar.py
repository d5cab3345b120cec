"""Registration: the instance's key, put under a lease of its own that the registrar keeps
alive."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from sd_core import Registration
from sd_core.plugin import BaseRegistrar, logger

from ._layout import encode, instance_key

if TYPE_CHECKING:
    from ._client import EtcdClient

__all__ = ["EtcdRegistrar"]

log = logger("sd_etcd")


class EtcdRegistrar(BaseRegistrar):
    """Puts ``<prefix>/<service>/<id>`` under a lease of ``ceil(Registration.ttl)`` seconds
    and renews the lease every ``ttl / 3``; async hooks, on the core's event loop.

    Each registrar has a lease of its own (as go-kit's): its TTL is its registration's, a
    lease revoked or expired takes that registration only, and ``deregister()`` revokes
    exactly it. When etcd answers that the lease is gone (it expired while etcd was out of
    reach, an operator revoked it, etcd lost its data), the registrar grants a new one and
    puts the key again, within one keepalive period of etcd answering.
    """

    backend_name = "etcd"

    def __init__(
        self,
        registration: Registration,
        client: EtcdClient,
        *,
        prefix: str,
        value_format: str,
        on_close: Callable[[], object],
    ) -> None:
        super().__init__(registration)
        self.client = client
        self.key = instance_key(prefix, registration)
        """The key of the registration in etcd."""
        self.value = encode(registration, value_format)
        self.lease_ttl = max(1, math.ceil(registration.ttl))
        """The TTL asked for the lease, in whole seconds (etcd's unit)."""
        self.lease_id: int | None = None
        """The lease the key is attached to while registered."""
        self._release = on_close

    @property
    def backend_id(self) -> str:
        """The key of the registration in etcd."""
        return self.key

    async def _backend_register(self) -> None:
        lease, granted = await self.client.grant(self.lease_ttl, self.key)
        if granted != self.lease_ttl:
            log.debug("etcd: %s: etcd granted a lease of %d s", self.key, granted)
        try:
            await self.client.put(self.key, self.value, lease)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.revoke(lease, self.key)  # it would only expire
            raise
        old, self.lease_id = self.lease_id, lease
        if old is not None and old != lease:
            # A lease left from a deregistration that failed: the key is on the new one now.
            with contextlib.suppress(Exception):
                await self.client.revoke(old, self.key)

    async def _backend_keepalive(self) -> bool:
        if self.lease_id is None:
            return False
        return await self.client.keepalive(self.lease_id, self.key) > 0

    async def _backend_deregister(self) -> None:
        lease = self.lease_id
        if lease is None:
            return
        await self.client.delete_if_leased(self.key, lease)
        await self.client.revoke(lease, self.key)
        self.lease_id = None

    async def _backend_close(self) -> None:
        self._release()
