"""A registrar's own health: its state, last error and restores, and how to follow changes."""

from __future__ import annotations

import enum
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from ._clock import clock
from ._closing import Closing
from ._notifier import Notifier
from ._secrets import scrub
from ._timeouts import check_timeout

__all__ = ["HealthChanges", "RegistrarHealth", "RegistrarState"]


class RegistrarState(enum.StrEnum):
    """Where a registrar stands with its backend."""

    IDLE = "idle"
    """Not registered: never, or deregistered."""
    REGISTERED = "registered"
    """The backend holds the registration and the last renewal succeeded."""
    RENEWING = "renewing"
    """A renewal failed and is being retried; the backend still holds the registration
    (the failures are younger than its TTL)."""
    FAILING = "failing"
    """Renewals have failed for longer than the TTL: the backend has dropped the registration
    or marked it critical, and it is not known to be back."""
    LOST = "lost"
    """The backend said it lost the registration (agent restart, expiry); it is being restored."""
    DEREGISTERING = "deregistering"
    """A deregistration failed; the next ``deregister()`` or ``close()`` (or exit) retries it."""
    CLOSED = "closed"
    """Closed: deregistered and released."""


_HEALTHY = frozenset({RegistrarState.REGISTERED, RegistrarState.RENEWING})


@dataclass(frozen=True, slots=True)
class RegistrarHealth:
    """A snapshot of a registrar's health.

    ``last_error`` is the latest error of a backend call (kept after recovery, for the record;
    secrets scrubbed), ``failures`` the number of consecutive failed calls, ``restores`` how
    many times the registration was put back after the backend lost it, and ``since`` the
    wall-clock time the state was entered.
    """

    state: RegistrarState
    last_error: BaseException | None = None
    restores: int = 0
    failures: int = 0
    since: float = field(default_factory=lambda: clock().time())

    @property
    def healthy(self) -> bool:
        """True while the backend holds the registration (``registered`` or ``renewing``):
        what a readiness probe should report."""
        return self.state in _HEALTHY

    def __str__(self) -> str:
        text = self.state.value
        details = []
        if self.failures:
            details.append(f"{self.failures} failed calls")
        if self.restores:
            details.append(f"{self.restores} restores")
        if details:
            text += f" ({', '.join(details)})"
        error = self.last_error
        if error is not None and (not self.healthy or self.state is RegistrarState.RENEWING):
            text += f": {type(error).__name__}: {scrub(str(error))}"
        return text


class HealthChanges(Closing, Iterator[RegistrarHealth], AsyncIterator[RegistrarHealth]):
    """The health of a registrar as it changes: the current health at once, then each change,
    coalesced to the latest not yet taken. Iterate it (``for``/``async for``) or call
    :meth:`get` / :meth:`get_async`; it ends when closed or when the registrar closes."""

    def __init__(self, current: RegistrarHealth, unsubscribe: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._latest: RegistrarHealth | None = current
        self._closed = False
        self._unsubscribe = unsubscribe
        self._notifier = Notifier()

    def _offer(self, health: RegistrarHealth) -> None:
        with self._lock:
            if self._closed:
                return
            self._latest = health
            if health.state is RegistrarState.CLOSED:
                self._closed = True
        self._notifier.notify()

    def _take(self) -> tuple[RegistrarHealth | None, bool, int]:
        with self._lock:
            health, self._latest = self._latest, None
            return health, self._closed, self._notifier.version

    def get(self, timeout: float | None = None) -> RegistrarHealth:
        """The next health; ``TimeoutError`` after ``timeout`` s (``None`` or ``math.inf``:
        no limit), ``StopIteration`` once closed."""
        deadline = _deadline(timeout)
        while True:
            health, closed, seen = self._take()
            if health is not None:
                return health
            if closed:
                raise StopIteration
            if not self._notifier.wait(seen, _left(deadline)):
                raise TimeoutError(f"no change of health within {timeout} s")

    async def get_async(self, timeout: float | None = None) -> RegistrarHealth:
        """Async twin of :meth:`get`; raises ``StopAsyncIteration`` once closed."""
        deadline = _deadline(timeout)
        while True:
            health, closed, seen = self._take()
            if health is not None:
                return health
            if closed:
                raise StopAsyncIteration
            if not await self._notifier.wait_async(seen, _left(deadline)):
                raise TimeoutError(f"no change of health within {timeout} s")

    def __next__(self) -> RegistrarHealth:
        return self.get()

    async def __anext__(self) -> RegistrarHealth:
        return await self.get_async()

    def __iter__(self) -> HealthChanges:
        return self

    def __aiter__(self) -> HealthChanges:
        return self

    def close(self) -> None:
        """Stop following (idempotent)."""
        with self._lock:
            self._closed = True
            unsubscribe, self._unsubscribe = self._unsubscribe, _nothing
        unsubscribe()
        self._notifier.notify()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (which never blocks)."""
        self.close()


def _nothing() -> None:
    return None


def _deadline(timeout: float | None) -> float | None:
    limit = check_timeout("timeout", timeout)
    return None if limit is None else clock().monotonic() + limit


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - clock().monotonic())
