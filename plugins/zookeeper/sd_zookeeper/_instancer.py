"""Discovery: a children watch on ``<base>/<service>`` and a data watch on each child, fed to
the kit's push style (kazoo's callbacks publish).

Every read runs on kazoo's callback thread, in order with the watch callbacks. A child's data
is read when it appears, when its data changes, and after each reconnection (kazoo drops every
watch when the connection drops, so everything is read and watched again); an unchanged child
(same ``mzxid``) is not decoded again. While the connection is down (SUSPENDED) subscribers
keep the last set; when the session is lost they get one error event, and the full set once
connected again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sd_core import BackendUnavailableError, Instance, SDError
from sd_core.plugin import Backoff, PushContext, PushInstancer, logger

from ._client import SessionEvent, ZooKeeperClient
from ._nodes import Decoded, decode

__all__ = ["ServiceWatch", "zookeeper_instancer"]

log = logger("sd_zookeeper")


class ServiceWatch:
    """One run of the watch of ``service`` (the nodes under ``path``), publishing to ``ctx``."""

    def __init__(self, client: ZooKeeperClient, service: str, path: str, ctx: PushContext) -> None:
        self.client = client
        self.service = service
        self.path = path
        self.ctx = ctx
        self._lock = threading.Lock()
        self._stopped = False
        self._queued = False
        self._full = False
        self._children = False
        self._data: set[str] = set()
        self._cache: dict[str, tuple[int, Decoded]] = {}
        """Each child's name -> (mzxid, what its data gave)."""
        self._warned: dict[str, str] = {}

    def start(self) -> Callable[[], None]:
        """Register the callbacks and read the service once connected; returns :meth:`stop`."""
        self.client.add_listener(self._on_session)
        if self.client.connected:
            self._want(full=True)
        elif self.client.lost is not None:
            self.ctx.fail(self.client.lost)
        return self.stop

    def stop(self) -> None:
        """Call nothing any more."""
        with self._lock:
            self._stopped = True
            names = list(self._cache)
        self.client.remove_listener(self._on_session)
        self.client.forget_watch(self.path, self._on_parent)
        for name in names:
            self.client.forget_watch(f"{self.path}/{name}", self._on_child)

    # -- callbacks (kazoo's threads) -----------------------------------------------------
    def _on_session(self, event: SessionEvent, error: SDError | None) -> None:
        if event == "connected":
            self._want(full=True)
        elif event == "lost" and error is not None:
            self.ctx.fail(error)

    def _on_parent(self, event: Any) -> None:
        if event.type != "NONE":  # NONE: the connection changed; _on_session handles it
            self._want(children=True)

    def _on_child(self, event: Any) -> None:
        if event.type == "CHANGED":
            self._want(data=event.path.rsplit("/", 1)[-1])
        elif event.type == "DELETED":
            self._want(children=True)

    def _want(self, *, full: bool = False, children: bool = False, data: str = "") -> None:
        with self._lock:
            if self._stopped:
                return
            self._full |= full
            self._children |= children
            if data:
                self._data.add(data)
            if self._queued:
                return
            self._queued = True
        self.client.run_soon(self._run)

    # -- reading (kazoo's callback thread) --------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    self._queued = False
                    return
                full, children, data = self._full, self._children, self._data
                if not (full or children or data):
                    self._queued = False
                    return
                self._full, self._children, self._data = False, False, set()
            try:
                self._read(full, children, data)
            except SDError as exc:
                if not self.client.connected:
                    continue  # read again, in full, once connected
                self.ctx.fail(exc, restart=True)
                return
            except Exception as exc:  # a bug or an unforeseen kazoo error: start over
                self.ctx.fail(exc, restart=True)
                return

    def _read(self, full: bool, children: bool, data: set[str]) -> None:
        from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]  # noqa: PLC0415

        cache = self._cache
        to_read: set[str] = {name for name in data if name in cache}
        if full or children:
            try:
                names = set(
                    self.client.call(
                        f"list {self.path}",
                        lambda k: k.get_children_async(self.path, watch=self._on_parent),
                    )
                )
            except NoNodeError:
                # The service has no node yet: watch for its creation.
                stat = self.client.call(
                    f"watch {self.path}", lambda k: k.exists_async(self.path, watch=self._on_parent)
                )
                if stat is not None:
                    self._want(children=True)  # created meanwhile
                    return
                names = set()
            for gone in set(cache) - names:
                del cache[gone]
            to_read |= names if full else names - set(cache)
        answers = self.client.collect(
            f"read the instances of {self.service!r}",
            [
                (name, self.client.kazoo.get_async(f"{self.path}/{name}", watch=self._on_child))
                for name in sorted(to_read)
            ],
        )
        for name, answer in answers:
            if isinstance(answer, NoNodeError):
                cache.pop(name, None)  # deleted since it was listed
            elif isinstance(answer, BackendUnavailableError):
                raise answer
            elif isinstance(answer, BaseException):
                cache[name] = (-1, Decoded(skipped=f"it cannot be read: {answer}"))
            else:
                value, stat = answer
                known = cache.get(name)
                if known is None or known[0] != stat.mzxid:
                    cache[name] = (stat.mzxid, decode(self.service, name, value or b""))
        self._publish()

    def _publish(self) -> None:
        instances: list[Instance] = []
        skipped: dict[str, str] = {}
        for name, (_, decoded) in self._cache.items():
            if decoded.instance is not None:
                instances.append(decoded.instance)
            else:
                skipped[name] = decoded.skipped
        for name, reason in skipped.items():
            if self._warned.get(name) != reason:
                level = log.debug if self._cache[name][1].hidden else log.warning
                level(
                    "zookeeper: skipping node %r of service %r (%s/%s): %s",
                    name,
                    self.service,
                    self.path,
                    name,
                    reason,
                )
        self._warned = skipped
        self.ctx.publish(instances)


def zookeeper_instancer(
    client: ZooKeeperClient,
    service: str,
    path: str,
    *,
    on_close: Callable[[], object] | None = None,
) -> PushInstancer:
    """A :class:`PushInstancer` of ``service``, whose instances are the children of ``path``;
    ``on_close`` runs once it stopped (the release of the shared client)."""

    def start(ctx: PushContext) -> Callable[[], None]:
        return ServiceWatch(client, service, path, ctx).start()

    return PushInstancer(
        start,
        name=f"zookeeper:{service}",
        backoff=Backoff(initial=0.2, maximum=5.0),
        on_close=on_close,
    )
