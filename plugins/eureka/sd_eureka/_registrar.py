"""Registration: an instance registered with Eureka, renewed by the core's keepalive,
registered again when a renewal answers 404, its status set through the status override."""

from __future__ import annotations

from typing import Any

from sd_core import ConfigError, Registration
from sd_core.plugin import BaseRegistrar, clock

from ._backend import Connection, shared_client
from ._mapping import STATUSES, app_name, check_registration, instance_document

__all__ = ["SETTABLE_STATUSES", "EurekaRegistrar"]

SETTABLE_STATUSES = tuple(status for status in STATUSES if status != "UNKNOWN")
"""What :meth:`EurekaRegistrar.set_status` takes (any case)."""


class EurekaRegistrar(BaseRegistrar):
    """Registers one instance of the application ``Registration.service`` (upper-cased, as
    Eureka keeps app names) under the instance id ``Registration.id``.

    The hooks are coroutines, run on the core's event loop with the connection's shared
    ``httpx.AsyncClient``. The core renews every ``ttl / 3`` seconds (``PUT
    /apps/{APP}/{id}``); a renewal answered 404 (the server forgot the instance: restarted,
    evicted it, or another server took over) registers it again at once, with its status.
    :meth:`set_status` takes ``UP``, ``DOWN``, ``STARTING`` or ``OUT_OF_SERVICE`` and sets
    Eureka's status override, which renewals keep; ``UP`` clears the override (and registers
    again when the instance was registered with another status, as ``STARTING``).
    """

    backend_name = "eureka"

    def __init__(
        self,
        registration: Registration,
        connection: Connection,
        *,
        initial_status: str = "UP",
        secure: bool = False,
    ) -> None:
        check_registration(registration)
        super().__init__(registration)
        self.app = app_name(registration.service)
        """The application's name at Eureka."""
        self.secure = secure
        self.wanted_status = _status(initial_status)
        """The status registered, and kept through restores."""
        self._dirty = 0
        self._registered_status = ""
        self._lease = shared_client(connection)
        self.client = self._lease.client

    def document(self) -> dict[str, Any]:
        """The instance document a registration sends now (a new ``lastDirtyTimestamp``:
        Eureka ignores a registration older than the copy it holds)."""
        self._dirty = max(round(clock().time() * 1000), self._dirty + 1)
        return instance_document(
            self.registration,
            status=self.wanted_status,
            dirty=self._dirty,
            secure=self.secure,
            renewal=self.keepalive_interval,
        )

    async def _backend_register(self) -> None:
        document = self.document()
        await self.client.register(self.app, document)
        self._registered_status = self.wanted_status

    async def _backend_keepalive(self) -> bool:
        return await self.client.renew(self.app, self.registration.id)

    async def _backend_deregister(self) -> None:
        await self.client.cancel(self.app, self.registration.id)

    async def _backend_set_status(self, status: str, note: str) -> None:
        wanted = _status(status)
        self.wanted_status = wanted
        if not self.registered:
            return  # registered with it
        reg = self.registration
        if wanted == "UP":
            known = await self.client.remove_override(self.app, reg.id, wanted)
            if known and self._registered_status != "UP":
                # Registered STARTING or DOWN, with no override to remove: the server takes
                # UP from a newer registration (as Spring's client does it).
                await self._backend_register()
        else:
            known = await self.client.override_status(self.app, reg.id, wanted)
        if not known:
            self.mark_lost("the server does not know the instance")

    async def _backend_close(self) -> None:
        self._lease.release()


def _status(status: str) -> str:
    if not isinstance(status, str) or status.strip().upper() not in SETTABLE_STATUSES:
        raise ConfigError(
            f"eureka: status must be one of {', '.join(SETTABLE_STATUSES)} (any case); "
            f"got {status!r}"
        )
    return status.strip().upper()
