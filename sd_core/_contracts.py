"""The contracts: Instancer, Registrar, Closer and Factory."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias, runtime_checkable

from ._event import Event
from ._health import HealthChanges, RegistrarHealth
from ._instance import Instance, Registration
from ._subscription import Subscription

__all__ = ["Closer", "Factory", "Instancer", "Registrar"]


@runtime_checkable
class Instancer(Protocol):
    """Watches one service in one backend and publishes :class:`Event` s."""

    def register(self, subscriber: Callable[[Event], None], /) -> None:
        """Deliver the current event at once and every change after it."""

    def deregister(self, subscriber: Callable[[Event], None], /) -> None:
        """Stop delivering to ``subscriber``."""

    def subscribe(self) -> Subscription:
        """An iterator and async iterator of events, coalesced to the latest."""

    def stop(self) -> None:
        """Stop watching and release every thread and connection."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Registrar(Protocol):
    """Announces the running service to a backend and keeps the announcement alive."""

    registration: Registration

    def register(self) -> None:
        """Announce the registration (idempotent)."""

    def deregister(self) -> None:
        """Withdraw it (idempotent)."""

    def set_status(self, status: str, note: str = "") -> None:
        """Report health, where the backend has a notion of it."""

    @property
    def backend_id(self) -> str:
        """The id the backend knows the registration by."""

    @property
    def health(self) -> RegistrarHealth:
        """The registrar's own health: state, last error, failures, restores."""

    def on_health_change(self, callback: Callable[[RegistrarHealth], object]) -> Callable[[], None]:
        """Call ``callback`` on each change of :attr:`health`; returns the way to stop."""

    def health_changes(self) -> HealthChanges:
        """An iterator and async iterator of :attr:`health` as it changes."""

    def close(self) -> None:
        """Deregister and release resources."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Closer(Protocol):
    """Anything with ``close()``: releases what a factory made for an instance."""

    def close(self) -> object: ...


Factory: TypeAlias = Callable[[Instance], Any]
"""Makes the endpoint of an instance: returns ``endpoint`` or ``(endpoint, closer)``."""
