"""BaseRegistrar: registration, keepalive, restore and health, shared by every backend."""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ClassVar, Self

from ._backoff import Backoff
from ._clock import Signal, clock

# Imported for its exit handler's place: handlers run last-registered first, so registrations
# are withdrawn at exit while the shared clients (and the core's loop) are still open.
from ._connections import connections as _connections  # noqa: F401
from ._dispatch import Mailbox
from ._errors import RegistrationError, SDError
from ._health import HealthChanges, RegistrarHealth, RegistrarState
from ._instance import Registration
from ._loop import core_loop
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
    renews: ClassVar[bool] = True
    """False for a backend whose liveness is kept elsewhere (a session, a lease the connection
    keeps alive): no renewal; the plugin calls :meth:`mark_lost` when that liveness is lost."""

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
        self._async = inspect.iscoroutinefunction(self._backend_register)
        self._lock = threading.Lock()
        self._wake = Signal()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._restorer_lock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        self._awake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._status: tuple[str, str] | None = None
        self._health_lock = threading.Lock()
        self._current_health = RegistrarHealth(RegistrarState.IDLE)
        self._listeners: list[Mailbox[RegistrarHealth]] = []
        self._followers: list[HealthChanges] = []
        self._last_ok = 0.0

    # -- what a backend implements -------------------------------------------------------
    # Each hook may be a plain method or a coroutine (all of a backend's hooks one way).
    def _backend_register(self) -> Awaitable[None] | None:
        raise NotImplementedError

    def _backend_deregister(self) -> Awaitable[None] | None:
        raise NotImplementedError

    def _backend_keepalive(self) -> bool | Awaitable[bool]:
        """Renew the registration; False when the backend no longer knows it."""
        return True

    def _backend_set_status(self, status: str, note: str) -> Awaitable[None] | None:
        raise NotImplementedError(f"the {self.backend_name} backend has no notion of health")

    def _backend_close(self) -> Awaitable[None] | None:
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
            self._last_ok = clock().monotonic()
        with self._health_lock:
            old = self._current_health
            new = RegistrarHealth(
                state=old.state if state is None else state,
                last_error=old.last_error if error is None else error,
                restores=old.restores + (1 if restored else 0),
                failures=0 if ok else old.failures + (1 if error is not None else 0),
                since=old.since if state is None or state is old.state else clock().time(),
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
        if self._async:
            core_loop().call(self._register_async())
            return
        with self._lock:
            if not self._may_register():
                return
            self._call("register", self._backend_register)
            self._registered_now()
            if self.renews:
                self._start_keepalive()

    def _start_keepalive(self) -> None:
        # Without renewals the thread exists only while a lost registration is being
        # restored: a thousand session-kept registrars cost no thread while all is well.
        self._thread = threading.Thread(
            target=self._keepalive_loop,
            name=f"sd-keepalive-{self.backend_name}-{self.backend_id}",
            daemon=True,
        )
        self._thread.start()

    def deregister(self) -> None:
        """Withdraw the registration and stop keeping it alive (idempotent).

        When the backend call fails, :class:`RegistrationError` is raised and the
        deregistration stays pending (state ``deregistering``): the next ``deregister()`` or
        ``close()`` tries again, and so does interpreter exit.
        """
        if self._async:
            core_loop().call(self._deregister_async())
            return
        with self._lock:
            if not self._may_deregister():
                return
            self._stop_thread()
            try:
                self._call("deregister", self._backend_deregister)
            except BaseException:
                self._set_health(RegistrarState.DEREGISTERING)
                raise
            self._deregistered_now()

    def set_status(self, status: str, note: str = "") -> None:
        """Report health where the backend has a notion of it (e.g. passing/warning/critical)."""
        if self._async:
            core_loop().call(self._set_status_async(status, note))
            return
        self._call("set status", lambda: self._backend_set_status(status, note))
        self._status = (status, note)

    def mark_lost(self, reason: str) -> None:
        """Say that the backend lost the registration; it is put back in the background.

        May be called from any thread (a session callback, a lease watcher).
        """
        if self._current_health.state not in _HELD:
            return
        log.warning(
            "%s: registration %s lost (%s); restoring it",
            self.backend_name,
            self.backend_id,
            scrub(reason),
        )
        self._set_health(RegistrarState.LOST)
        self._wake_up()

    def close(self) -> None:
        """Deregister and release the client's resources (idempotent).

        When the deregistration fails, the error is raised and nothing is released: the
        next ``close()`` (or interpreter exit) tries again.
        """
        if self._async:
            core_loop().call(self._close_async())
            return
        self.deregister()
        with self._lock:
            if not self._may_close():
                return
        try:
            self._backend_close()
        finally:
            self._closed_now()

    async def aregister(self) -> None:
        """Async twin of :meth:`register`: on the core's loop for an async backend (no worker
        thread), in a worker thread for a blocking one."""
        if self._async:
            await core_loop().acall(self._register_async())
        else:
            await asyncio.to_thread(self.register)

    async def aderegister(self) -> None:
        """Async twin of :meth:`deregister`."""
        if self._async:
            await core_loop().acall(self._deregister_async())
        else:
            await asyncio.to_thread(self.deregister)

    async def aset_status(self, status: str, note: str = "") -> None:
        """Async twin of :meth:`set_status`."""
        if self._async:
            await core_loop().acall(self._set_status_async(status, note))
        else:
            await asyncio.to_thread(self.set_status, status, note)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._async:
            await core_loop().acall(self._close_async())
        else:
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

    # -- the steps both twins take (no I/O) ------------------------------------------------
    def _may_register(self) -> bool:
        state = self._current_health.state
        if state is RegistrarState.CLOSED:
            raise RegistrationError(f"{self!r} is closed")
        return state not in _HELD

    def _registered_now(self) -> None:
        self._set_health(RegistrarState.REGISTERED, ok=True)
        self._stopping = False
        self._wake_clear()
        _live.add(self)

    def _may_deregister(self) -> bool:
        state = self._current_health.state
        return state in _HELD or state is RegistrarState.DEREGISTERING

    def _deregistered_now(self) -> None:
        self._set_health(RegistrarState.IDLE, ok=True)
        _live.discard(self)

    def _may_close(self) -> bool:
        state = self._current_health.state
        # Closed already, or registered again meanwhile by another caller: nothing to release.
        if state is not RegistrarState.IDLE:
            return False
        self._set_health(RegistrarState.CLOSED)
        return True

    def _closed_now(self) -> None:
        with self._health_lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()

    def _failure(self, what: str, exc: BaseException) -> BaseException:
        """The error a failed backend call becomes: secrets scrubbed, a non-SDError wrapped."""
        scrub_error(exc)
        if isinstance(exc, SDError):
            return exc
        reg = self.registration
        error = RegistrationError(
            f"{self.backend_name}: could not {what} {reg.service} {self.backend_id}: "
            f"{type(exc).__name__}: {scrub(str(exc))}"
        )
        error.__cause__ = exc
        return error

    def _first_delay(self) -> float | None:
        return self.keepalive_interval if self.renews else None

    def _renewed(self, alive: bool) -> float | None:
        if alive:
            self._backoff.reset()
            if not self._stopping:
                self._set_health(RegistrarState.REGISTERED, ok=True)
            return self._first_delay()
        if not self._stopping:
            log.warning(
                "%s: the backend no longer knows %s; restoring it",
                self.backend_name,
                self.backend_id,
            )
            self._set_health(RegistrarState.LOST)
        return 0.0

    def _renew_failed(self, exc: BaseException) -> float:
        delay = min(self._backoff.next(), self.keepalive_interval)
        error = self._failure("renew", exc)
        overdue = clock().monotonic() - self._last_ok > self.registration.ttl
        state = RegistrarState.FAILING if overdue else RegistrarState.RENEWING
        if not self._stopping:
            self._set_health(state, error=error)
        log.warning(
            "%s: keepalive of %s failed, retrying in %.2f s: %s",
            self.backend_name,
            self.backend_id,
            delay,
            error,
        )
        return delay

    def _restored(self) -> float | None:
        self._backoff.reset()
        if self._stopping:
            return self._first_delay()
        self._set_health(RegistrarState.REGISTERED, ok=True, restored=True)
        log.warning(
            "%s: restored registration %s (restores: %d)",
            self.backend_name,
            self.backend_id,
            self.restores,
        )
        return self._first_delay()

    def _restore_failed(self, exc: BaseException) -> float:
        delay = self._backoff.next()
        error = self._failure("restore", exc)
        if not self._stopping:
            self._set_health(error=error)  # still lost: the state says so
        log.warning(
            "%s: restoring %s failed, retrying in %.2f s: %s",
            self.backend_name,
            self.backend_id,
            delay,
            error,
        )
        return delay

    # -- the blocking twin -------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except NotImplementedError:
            raise
        except Exception as exc:
            error = self._failure(what, exc)
            self._set_health(error=error)
            if error is exc:
                raise
            raise error from exc

    def _stop_thread(self) -> None:
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _keepalive_loop(self) -> None:
        delay = self._first_delay()
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping:
                return
            if self._current_health.state is RegistrarState.LOST:
                try:
                    self._backend_register()
                    if self._status is not None:
                        self._backend_set_status(*self._status)
                except Exception as exc:
                    delay = self._restore_failed(exc)
                else:
                    delay = self._restored()
                    if not self.renews:
                        delay = 0.0  # go and end: nothing to renew
            elif self.renews:
                try:
                    alive = self._backend_keepalive()
                except Exception as exc:
                    delay = self._renew_failed(exc)
                else:
                    delay = self._renewed(bool(alive))
            else:
                with self._restorer_lock:  # restored: end, unless lost again meanwhile
                    if self.health.state is not RegistrarState.LOST:  # may have changed since
                        self._thread = None
                        return
                delay = 0.0

    # -- the async twin (hooks are coroutines, run on the core's loop) -----------------------
    def _async_state(self) -> tuple[asyncio.Lock, asyncio.Event]:
        if self._alock is None or self._awake is None:
            self._alock, self._awake = asyncio.Lock(), asyncio.Event()
        return self._alock, self._awake

    async def _acall(self, what: str, coro: Coroutine[Any, Any, object]) -> None:
        try:
            await coro
        except NotImplementedError:
            raise
        except Exception as exc:
            error = self._failure(what, exc)
            self._set_health(error=error)
            if error is exc:
                raise
            raise error from exc

    async def _register_async(self) -> None:
        lock, _ = self._async_state()
        async with lock:
            if not self._may_register():
                return
            await self._acall("register", _coro(self._backend_register))
            self._registered_now()
            self._task = asyncio.get_running_loop().create_task(self._keepalive_async())

    async def _deregister_async(self) -> None:
        lock, wake = self._async_state()
        async with lock:
            if not self._may_deregister():
                return
            self._stopping = True
            wake.set()
            task, self._task = self._task, None
            if task is not None and task is not asyncio.current_task():
                await asyncio.wait({task})
            try:
                await self._acall("deregister", _coro(self._backend_deregister))
            except BaseException:
                self._set_health(RegistrarState.DEREGISTERING)
                raise
            self._deregistered_now()

    async def _set_status_async(self, status: str, note: str) -> None:
        await self._acall("set status", _coro(self._backend_set_status, status, note))
        self._status = (status, note)

    async def _close_async(self) -> None:
        await self._deregister_async()
        lock, _ = self._async_state()
        async with lock:
            if not self._may_close():
                return
        try:
            await _coro(self._backend_close)
        finally:
            self._closed_now()

    async def _keepalive_async(self) -> None:
        _, wake = self._async_state()
        delay = self._first_delay()
        while True:
            if delay is None:
                await wake.wait()
            elif not wake.is_set():
                sleeper = asyncio.ensure_future(clock().sleep(delay))
                woken = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    woken.cancel()
            wake.clear()
            if self._stopping:
                return
            if self._current_health.state is RegistrarState.LOST:
                try:
                    await _coro(self._backend_register)
                    if self._status is not None:
                        await _coro(self._backend_set_status, *self._status)
                except Exception as exc:
                    delay = self._restore_failed(exc)
                else:
                    delay = self._restored()
            elif self.renews:
                try:
                    alive = await _coro(self._backend_keepalive)
                except Exception as exc:
                    delay = self._renew_failed(exc)
                else:
                    delay = self._renewed(bool(alive))
            else:
                delay = None

    # -- waking the keepalive, whichever twin runs it ---------------------------------------
    def _wake_up(self) -> None:
        if self._async:
            wake = self._awake
            if wake is not None:
                core_loop().loop().call_soon_threadsafe(wake.set)
            return
        self._wake.set()
        if not self.renews:
            with self._restorer_lock:
                if self._thread is None and not self._stopping:
                    self._start_keepalive()

    def _wake_clear(self) -> None:
        if self._async:
            if self._awake is not None:
                self._awake.clear()
        else:
            self._wake.clear()


async def _coro(hook: Callable[..., object], *args: object) -> Any:
    """Call a backend hook of an async registrar and await what it returns (a hook the backend
    did not override, such as ``_backend_close``, may be the base's sync one)."""
    result = hook(*args)
    if inspect.isawaitable(result):
        return await result
    return result


@atexit.register
def _deregister_at_exit() -> None:
    for registrar in list(_live):
        try:
            registrar.close()
        except Exception as exc:
            log.warning("deregistering %r at exit failed: %s", registrar, exc)
