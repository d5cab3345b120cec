"""BaseRegistrar: registration, keepalive, restore and health, shared by every backend."""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Self

from ._backoff import Backoff
from ._dispatch import Mailbox
from ._errors import RegistrationError, SDError
from ._health import HealthChanges, RegistrarHealth, RegistrarState
from ._instance import Registration
from ._secrets import logger, scrub, scrub_error

__all__ = ["BaseRegistrar"]

log = logger("sd_core.registrar")

_live: weakref.WeakSet[BaseRegistrar] = weakref.WeakSet()

_HELD = frozenset(
    {
        RegistrarState.REGISTERED,
        RegistrarState.RENEWING,
        RegistrarState.FAILING,
        RegistrarState.LOST,
    }
)
"""The states in which the registrar keeps the registration alive."""
_TROUBLE = frozenset({RegistrarState.FAILING, RegistrarState.LOST, RegistrarState.DEREGISTERING})


class BaseRegistrar:
    """Announces one :class:`Registration` and keeps it alive until deregistered.

    A backend subclasses it and implements ``_backend_register``, ``_backend_deregister``
    and, where it renews, ``_backend_keepalive`` (return False when the backend no longer
    knows the registration). While registered, a thread renews every ``ttl *
    keepalive_fraction`` seconds; when the backend lost the registration (the keepalive
    said so, or the plugin called :meth:`mark_lost`), it registers again with backoff and
    counts it in :attr:`restores`. ``register()`` and ``deregister()`` are idempotent; a
    deregistration that failed stays pending and is retried by the next ``deregister()`` or
    ``close()``, and at interpreter exit. :attr:`health` tells where the registrar stands
    (see :class:`RegistrarState`); :meth:`on_health_change` and :meth:`health_changes`
    follow it.
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
        self._status: tuple[str, str] | None = None
        self._health_lock = threading.Lock()
        self._current_health = RegistrarHealth(RegistrarState.IDLE)
        self._listeners: list[Mailbox[RegistrarHealth]] = []
        self._followers: list[HealthChanges] = []
        self._last_ok = 0.0

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

    @property
    def backend_id(self) -> str:
        """The id the backend knows the registration by: ``registration.id`` unless the
        backend derives its own (Consul does when no id was given)."""
        return self.registration.id

    # -- health --------------------------------------------------------------------------
    @property
    def health(self) -> RegistrarHealth:
        """Where the registrar stands now: state, last error, consecutive failures, restores."""
        return self._current_health

    @property
    def restores(self) -> int:
        """How many times the registration was put back after the backend lost it."""
        return self._current_health.restores

    @property
    def registered(self) -> bool:
        """True between a successful ``register()`` and ``deregister()`` (also while the
        registration is being renewed or restored: see :attr:`health` for that)."""
        return self._current_health.state in _HELD

    def on_health_change(self, callback: Callable[[RegistrarHealth], object]) -> Callable[[], None]:
        """Call ``callback(health)`` on each change of health, on a delivery thread (a slow
        callback delays only itself and then skips to the latest). Returns a function that
        stops the calls."""
        mailbox: Mailbox[RegistrarHealth] = Mailbox(callback, describe="health listener")
        with self._health_lock:
            self._listeners.append(mailbox)

        def remove() -> None:
            mailbox.close()
            with self._health_lock:
                if mailbox in self._listeners:
                    self._listeners.remove(mailbox)

        return remove

    def health_changes(self) -> HealthChanges:
        """An iterator and async iterator of :attr:`health`: the current one at once, then
        each change (coalesced to the latest not yet taken); it ends when the registrar is
        closed, or when the iterator is closed."""
        with self._health_lock:
            changes = HealthChanges(self._current_health, lambda: self._unfollow(changes))
            if self._current_health.state is RegistrarState.CLOSED:
                changes._offer(self._current_health)
            else:
                self._followers.append(changes)
        return changes

    def _unfollow(self, changes: HealthChanges) -> None:
        with self._health_lock:
            if changes in self._followers:
                self._followers.remove(changes)

    def _set_health(
        self,
        state: RegistrarState | None = None,
        *,
        error: BaseException | None = None,
        ok: bool = False,
        restored: bool = False,
    ) -> None:
        if ok:
            self._last_ok = time.monotonic()
        with self._health_lock:
            old = self._current_health
            new = RegistrarHealth(
                state=old.state if state is None else state,
                last_error=old.last_error if error is None else error,
                restores=old.restores + (1 if restored else 0),
                failures=0 if ok else old.failures + (1 if error is not None else 0),
                since=old.since if state is None or state is old.state else time.time(),
            )
            if new == old:
                return
            self._current_health = new
            listeners = tuple(self._listeners)
            followers = tuple(self._followers)
            if new.state is RegistrarState.CLOSED:
                self._followers.clear()
        if new.state is not old.state:
            level = log.warning if new.state in _TROUBLE else log.info
            level(
                "%s: %s %s is now %s",
                self.backend_name,
                self.registration.service,
                self.backend_id,
                new,
            )
        for listener in listeners:
            listener.offer(new)
        for follower in followers:
            follower._offer(new)

    # -- public API ----------------------------------------------------------------------
    def register(self) -> None:
        """Announce the registration and keep it alive (idempotent).

        Raises :class:`RegistrationError` when the backend refused or could not be reached.
        Registering again while a deregistration is pending supersedes it.
        """
        with self._lock:
            state = self._current_health.state
            if state is RegistrarState.CLOSED:
                raise RegistrationError(f"{self!r} is closed")
            if state in _HELD:
                return
            self._call("register", self._backend_register)
            self._set_health(RegistrarState.REGISTERED, ok=True)
            self._stopping.clear()
            self._wake.clear()
            self._thread = threading.Thread(
                target=self._keepalive_loop,
                name=f"sd-keepalive-{self.backend_name}-{self.backend_id}",
                daemon=True,
            )
            self._thread.start()
            _live.add(self)

    def deregister(self) -> None:
        """Withdraw the registration and stop keeping it alive (idempotent).

        When the backend call fails, :class:`RegistrationError` is raised and the
        deregistration stays pending (state ``deregistering``): the next ``deregister()`` or
        ``close()`` tries again, and so does interpreter exit.
        """
        with self._lock:
            state = self._current_health.state
            if state not in _HELD and state is not RegistrarState.DEREGISTERING:
                return
            self._stop_thread()
            try:
                self._call("deregister", self._backend_deregister)
            except BaseException:
                self._set_health(RegistrarState.DEREGISTERING)
                raise
            self._set_health(RegistrarState.IDLE, ok=True)
            _live.discard(self)

    def set_status(self, status: str, note: str = "") -> None:
        """Report health where the backend has a notion of it (e.g. passing/warning/critical)."""
        self._call("set status", lambda: self._backend_set_status(status, note))
        self._status = (status, note)

    def mark_lost(self, reason: str) -> None:
        """Say that the backend lost the registration; it is put back in the background."""
        if self._current_health.state not in _HELD:
            return
        log.warning(
            "%s: registration %s lost (%s); restoring it",
            self.backend_name,
            self.backend_id,
            scrub(reason),
        )
        self._set_health(RegistrarState.LOST)
        self._wake.set()

    def close(self) -> None:
        """Deregister and release the client's resources (idempotent).

        When the deregistration fails, the error is raised and nothing is released: the
        next ``close()`` (or interpreter exit) tries again.
        """
        self.deregister()
        with self._lock:
            if self._current_health.state is RegistrarState.CLOSED:
                return
            if self._current_health.state is not RegistrarState.IDLE:
                return  # registered again meanwhile by another thread
            self._set_health(RegistrarState.CLOSED)
        try:
            self._backend_close()
        finally:
            with self._health_lock:
                listeners, self._listeners = self._listeners, []
            for listener in listeners:
                listener.close()

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
        reg = self.registration
        state = self._current_health.state.value
        return f"<{type(self).__name__} {reg.service} id={self.backend_id!r} {reg.address} {state}>"

    # -- machinery -----------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except NotImplementedError:
            raise
        except Exception as exc:
            scrub_error(exc)
            if isinstance(exc, SDError):
                self._set_health(error=exc)
                raise
            reg = self.registration
            error = RegistrationError(
                f"{self.backend_name}: could not {what} {reg.service} {self.backend_id}: "
                f"{type(exc).__name__}: {scrub(str(exc))}"
            )
            self._set_health(error=error)
            raise error from exc

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
            lost = self._current_health.state is RegistrarState.LOST
            delay = self._restore() if lost else self._renew()

    def _failed_call(self, what: str, exc: Exception) -> BaseException:
        scrub_error(exc)
        if isinstance(exc, SDError):
            return exc
        error = RegistrationError(
            f"{self.backend_name}: {what} of {self.backend_id} failed: "
            f"{type(exc).__name__}: {scrub(str(exc))}"
        )
        error.__cause__ = exc
        return error

    def _renew(self) -> float:
        try:
            alive = self._backend_keepalive()
        except Exception as exc:
            delay = min(self._backoff.next(), self.keepalive_interval)
            error = self._failed_call("keepalive", exc)
            overdue = time.monotonic() - self._last_ok > self.registration.ttl
            state = RegistrarState.FAILING if overdue else RegistrarState.RENEWING
            if not self._stopping.is_set():
                self._set_health(state, error=error)
            log.warning(
                "%s: keepalive of %s failed, retrying in %.2f s: %s",
                self.backend_name,
                self.backend_id,
                delay,
                error,
            )
            return delay
        if alive:
            self._backoff.reset()
            if not self._stopping.is_set():
                self._set_health(RegistrarState.REGISTERED, ok=True)
            return self.keepalive_interval
        if not self._stopping.is_set():
            log.warning(
                "%s: the backend no longer knows %s; restoring it",
                self.backend_name,
                self.backend_id,
            )
            self._set_health(RegistrarState.LOST)
        return 0.0

    def _restore(self) -> float:
        try:
            self._backend_register()
            if self._status is not None:
                self._backend_set_status(*self._status)
        except Exception as exc:
            delay = self._backoff.next()
            error = self._failed_call("restoring the registration", exc)
            if not self._stopping.is_set():
                self._set_health(error=error)
            log.warning(
                "%s: restoring %s failed, retrying in %.2f s: %s",
                self.backend_name,
                self.backend_id,
                delay,
                error,
            )
            return delay
        self._backoff.reset()
        if self._stopping.is_set():
            return self.keepalive_interval
        self._set_health(RegistrarState.REGISTERED, ok=True, restored=True)
        log.warning(
            "%s: restored registration %s (restores: %d)",
            self.backend_name,
            self.backend_id,
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
