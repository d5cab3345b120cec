"""Shared watches: instancers of the same backend, service and options in a process share
one watch of the backend (one query stream, one connection), each with its own subscribers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._broadcast import BaseInstancer
from ._contracts import Instancer
from ._dispatch import never_blocks
from ._event import Event

__all__ = ["SharedInstancer", "WatchRegistry", "options_key", "watches"]


def _frozen(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(_frozen(item) for item in value)
    if isinstance(value, Mapping):
        return tuple(sorted((key, _frozen(item)) for key, item in value.items()))
    return value  # type: ignore[no-any-return]


def options_key(options: Mapping[str, Any]) -> Hashable:
    """A hashable form of resolved options (lists become tuples)."""
    return _frozen(options)


@dataclass
class _Watch:
    source: Instancer
    users: int = 0


class WatchRegistry:
    """The watches of the process by key, each counted by the instancers that use it and
    stopped when the last of them stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[Hashable, _Watch] = {}

    def instancer(self, key: Hashable, make: Callable[[], Instancer]) -> SharedInstancer:
        """A new instancer on the watch of ``key``, made with ``make()`` if there is none."""
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = _Watch(make())
            watch.users += 1
        try:
            return SharedInstancer(self, key, watch.source)
        except BaseException:
            self.release(key)
            raise

    def release(self, key: Hashable) -> None:
        """One user of the watch of ``key`` is done; the last one stops it."""
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                return
            watch.users -= 1
            if watch.users > 0:
                return
            del self._watches[key]
        watch.source.stop()

    def users(self, key: Hashable) -> int:
        """How many instancers use the watch of ``key`` (0 when there is none)."""
        with self._lock:
            watch = self._watches.get(key)
            return 0 if watch is None else watch.users

    def __len__(self) -> int:
        return len(self._watches)


class SharedInstancer(BaseInstancer):
    """An instancer on a watch it may share with others: it has its own subscribers, and
    stopping it stops the watch only when no other instancer uses it."""

    def __init__(self, registry: WatchRegistry, key: Hashable, source: Instancer) -> None:
        super().__init__()
        self._registry = registry
        self._key = key
        self._source = source
        self._released = False
        source.register(self._relay)

    @property
    def name(self) -> str:
        """The name of the watch."""
        return str(getattr(self._source, "name", type(self._source).__name__))

    @property
    def source(self) -> Instancer:
        """The shared watch."""
        return self._source

    @never_blocks
    def _relay(self, event: Event) -> None:
        self.update(event)

    def stop(self) -> None:
        """End this instancer's subscriptions; the watch stops with its last user."""
        super().stop()
        with self._lock:
            if self._released:
                return
            self._released = True
        self._source.deregister(self._relay)
        self._registry.release(self._key)

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "watching"
        users = self._registry.users(self._key)
        return f"<{type(self).__name__} {self._source!r} {state}, watch shared by {users}>"


_WATCHES = WatchRegistry()


def watches() -> WatchRegistry:
    """The process's shared watches."""
    return _WATCHES
