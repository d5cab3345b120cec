"""BaseRegistrar: registration, keepalive and restore, shared by every backend."""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Self

from ._backoff import Backoff
from ._errors import RegistrationError, SDError
from ._instance import Registration

__all__ = ["BaseRegistrar"]

log = logging.getLogger("sd_core.registrar")

_live: weakref.WeakSet[BaseRegistrar] = weakref.WeakSet()


class BaseRegistrar:
    """Announces one :class:`Registration` and keeps it alive until deregistered.

    A backend subclasses it and implements ``_backend_register``, ``_backend_deregister``
    and, where it renews, ``_backend_keepalive`` (return False when the backend no longer
    knows the registration). While registered, a thread renews every ``ttl *
    keepalive_fraction`` seconds; when the backend lost the registration (the keepalive
    said so, or the plugin called :meth:`mark_lost`), it registers again with backoff and
    counts it in :attr:`restores`. ``register()`` and ``deregister()`` are idempotent;
    registrations still held at interpreter exit are withdrawn on a best-effort basis.
    """

    backend_name = "backend"

    def __init__(
        self,
        registration: Registration,
        *,
        keepalive_fraction: float = 1 / 3,
        backoff: Backoff | None = None,
    ) -> None:
        if not isinstance(registration, Registration):
            raise TypeError(f"registration must be a Registration, got {registration!r}")
        if not 0 < keepalive_fraction <= 1:
            raise ValueError(f"keepalive_fraction must be in (0, 1], got {keepalive_fraction}")
        self.registration = registration
        self.keepalive_interval = registration.ttl * keepalive_fraction
        self._backoff = backoff or Backoff(initial=0.1, maximum=max(0.1, self.keepalive_interval))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered = False
        self._lost = False
        self._closed = False
        self._status: tuple[str, str] | None = None
        self.restores = 0
        """How many times the registration was put back after the backend lost it."""

    # -- what a backend implements -------------------------------------------------------
    def _backend_register(self) -> None:
        raise NotImplementedError

    def _backend_deregister(self) -> None:
        raise NotImplementedError

    def _backend_keepalive(self) -> bool:
        """Renew the registration; False when the backend no longer knows it."""
        return True

    def _backend_set_status(self, status: str, note: str) -> None:
        raise NotImplementedError(f"the {self.backend_name} backend has no notion of health")

    def _backend_close(self) -> None:
        """Release client resources (called once, after the final deregistration)."""

    # -- public API ----------------------------------------------------------------------
    @property
    def registered(self) -> bool:
        """True between a successful ``register()`` and ``deregister()``."""
        return self._registered

    def register(self) -> None:
        """Announce the registration and keep it alive (idempotent).

        Raises :class:`RegistrationError` when the backend refused or could not be reached.
        """
        with self._lock:
            if self._closed:
                raise RegistrationError(f"{self!r} is closed")
            if self._registered:
                return
            self._call("register", self._backend_register)
            self._registered = True
            self._lost = False
            self._stopping.clear()
            self._wake.clear()
            self._thread = threading.Thread(
                target=self._keepalive_loop,
                name=f"sd-keepalive-{self.backend_name}-{self.registration.id}",
                daemon=True,
            )
            self._thread.start()
            _live.add(self)
        log.info(
            "%s: registered %s %s",
            self.backend_name,
            self.registration.service,
            self.registration.id,
        )

    def deregister(self) -> None:
        """Withdraw the registration and stop keeping it alive (idempotent)."""
        with self._lock:
            if not self._registered:
                return
            self._registered = False
            _live.discard(self)
            self._stop_thread()
            self._call("deregister", self._backend_deregister)
        log.info(
            "%s: deregistered %s %s",
            self.backend_name,
            self.registration.service,
            self.registration.id,
        )

    def set_status(self, status: str, note: str = "") -> None:
        """Report health where the backend has a notion of it (e.g. passing/warning/critical)."""
        self._call("set status", lambda: self._backend_set_status(status, note))
        self._status = (status, note)

    def mark_lost(self, reason: str) -> None:
        """Say that the backend lost the registration; it is put back in the background."""
        if not self._registered:
            return
        log.warning(
            "%s: registration %s lost (%s); restoring it",
            self.backend_name,
            self.registration.id,
            reason,
        )
        self._lost = True
        self._wake.set()

    def close(self) -> None:
        """Deregister and release the client's resources (idempotent)."""
        try:
            self.deregister()
        finally:
            with self._lock:
                first = not self._closed
                self._closed = True
            if first:
                self._backend_close()

    async def aregister(self) -> None:
        """Async twin of :meth:`register` (runs it in a worker thread)."""
        await asyncio.to_thread(self.register)

    async def aderegister(self) -> None:
        """Async twin of :meth:`deregister`."""
        await asyncio.to_thread(self.deregister)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        self.register()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.aregister()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "registered" if self._registered else "closed" if self._closed else "idle"
        reg = self.registration
        return f"<{type(self).__name__} {reg.service} id={reg.id!r} {reg.address} {state}>"

    # -- machinery -----------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except SDError:
            raise
        except NotImplementedError:
            raise
        except Exception as exc:
            reg = self.registration
            raise RegistrationError(
                f"{self.backend_name}: could not {what} {reg.service} {reg.id}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _stop_thread(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _keepalive_loop(self) -> None:
        delay = self.keepalive_interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                return
            delay = self._restore() if self._lost else self._renew()

    def _renew(self) -> float:
        try:
            alive = self._backend_keepalive()
        except Exception as exc:
            delay = min(self._backoff.next(), self.keepalive_interval)
            log.warning(
                "%s: keepalive of %s failed, retrying in %.2f s: %s",
                self.backend_name,
                self.registration.id,
                delay,
                exc,
            )
            return delay
        if alive:
            self._backoff.reset()
            return self.keepalive_interval
        if not self._stopping.is_set():
            log.warning(
                "%s: the backend no longer knows %s; restoring it",
                self.backend_name,
                self.registration.id,
            )
            self._lost = True
        return 0.0

    def _restore(self) -> float:
        try:
            self._backend_register()
            if self._status is not None:
                self._backend_set_status(*self._status)
        except Exception as exc:
            delay = self._backoff.next()
            log.warning(
                "%s: restoring %s failed, retrying in %.2f s: %s",
                self.backend_name,
                self.registration.id,
                delay,
                exc,
            )
            return delay
        self._lost = False
        self._backoff.reset()
        self.restores += 1
        log.warning(
            "%s: restored registration %s (restores: %d)",
            self.backend_name,
            self.registration.id,
            self.restores,
        )
        return self.keepalive_interval


@atexit.register
def _deregister_at_exit() -> None:
    for registrar in list(_live):
        try:
            registrar.close()
        except Exception as exc:
            log.warning("deregistering %r at exit failed: %s", registrar, exc)
