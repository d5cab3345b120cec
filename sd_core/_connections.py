"""Shared connections: one client per backend and distinct connection options in the process,
counted by the instancers and registrars that use it and closed when the last one is done.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
from collections.abc import Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._loop import core_loop
from ._secrets import logger
from ._sharing import options_key

__all__ = ["Connections", "Lease", "connections"]

log = logger("sd_core.connections")

C = TypeVar("C")


@dataclass
class _Shared:
    client: Any
    users: int


class Lease(Generic[C]):
    """One user's hold on a shared client: ``client`` to call, :meth:`release` when done
    (idempotent; the last release closes the client)."""

    __slots__ = ("_connections", "_key", "_released", "client")

    def __init__(self, connections: Connections, key: tuple[str, Hashable], client: C) -> None:
        self._connections = connections
        self._key = key
        self._released = False
        self.client: C = client

    def release(self) -> None:
        """Done with the client; the last user's release closes it."""
        if self._released:
            return
        self._released = True
        self._connections._release(self._key)

    def __repr__(self) -> str:
        return f"<Lease of {self.client!r}{' released' if self._released else ''}>"


class Connections:
    """The shared clients of the process, by backend and connection options."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, Hashable], _Shared] = {}

    def lease(self, backend: str, options: Mapping[str, Any], open: Callable[[], C]) -> Lease[C]:
        """A hold on the client of ``backend`` for these connection ``options``, opened with
        ``open()`` when there is none yet. The options identify the client: give exactly
        those that decide where and how it connects (address, credentials, TLS, timeout)."""
        key: tuple[str, Hashable] = (backend, options_key(options))
        with self._lock:
            shared = self._clients.get(key)
            if shared is None:
                shared = self._clients[key] = _Shared(open(), 0)
            shared.users += 1
            return Lease(self, key, shared.client)

    def _release(self, key: tuple[str, Hashable]) -> None:
        with self._lock:
            shared = self._clients.get(key)
            if shared is None:
                return
            shared.users -= 1
            if shared.users > 0:
                return
            del self._clients[key]
        _close(shared.client)

    def count(self, backend: str | None = None) -> int:
        """How many clients are open (of ``backend``, or of every backend)."""
        with self._lock:
            return len([key for key in self._clients if backend is None or key[0] == backend])

    def users(self, backend: str, options: Mapping[str, Any]) -> int:
        """How many instancers and registrars hold the client of these options."""
        with self._lock:
            shared = self._clients.get((backend, options_key(options)))
            return 0 if shared is None else shared.users

    def close_all(self) -> None:
        """Close every client (at interpreter exit)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for shared in clients:
            _close(shared.client)


def _close(client: Any) -> None:
    """``client.aclose()`` on the core's loop, or ``client.close()`` (awaited there when it
    returns an awaitable); errors are logged."""
    try:
        aclose = getattr(client, "aclose", None)
        if aclose is not None and inspect.iscoroutinefunction(aclose):
            _run(aclose())
            return
        close = getattr(client, "close", None)
        if close is None:
            return
        result = close()
        if inspect.isawaitable(result):
            _run(_await(result))
    except Exception:
        log.warning("closing %r failed", client, exc_info=True)


async def _await(awaitable: Any) -> None:
    await awaitable


_closing: set[asyncio.Task[None]] = set()
"""Closes scheduled from the core's loop itself, kept referenced until they end."""


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a close on the core's loop: waited for from any other thread; scheduled when the
    last release happens on the loop (an async registrar's ``_backend_close``)."""
    if not core_loop().in_loop():
        core_loop().call(coro, timeout=10)
        return
    task = asyncio.get_running_loop().create_task(coro)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_CONNECTIONS = Connections()


def connections() -> Connections:
    """The process's shared clients."""
    return _CONNECTIONS


atexit.register(_CONNECTIONS.close_all)
