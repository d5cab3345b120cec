"""ZooKeeperClient: the narrow wrapper over kazoo that every instancer and registrar of one
connection shares -- one kazoo client, so one ZooKeeper session.

It owns kazoo's threads (a connection thread and two callback workers, named ``kazoo-…``),
started when it opens and joined when it closes, maps kazoo's errors onto the core's, and
tells its listeners how the session goes:

- ``connected``: connected (the first time, again to the same session, or with a new one);
- ``suspended``: the connection dropped; the session may still be alive;
- ``lost``: the session is gone (ZooKeeper said it expired), or taken for gone: no connection
  for longer than the session timeout (as Curator does), or none made within ``timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sd_core import BackendUnavailableError, ConfigError, SDError
from sd_core.plugin import TLSSettings, clock, core_loop, logger, scrub, scrub_error

__all__ = ["Connection", "SessionEvent", "SessionListener", "ZooKeeperClient"]

log = logger("sd_zookeeper")
kazoo_log = logger("sd_zookeeper.kazoo")
"""kazoo's own log lines (it logs requests at DEBUG, the digest credentials among them):
through the core's scrubbing filter."""

SessionEvent = Literal["connected", "suspended", "lost"]
SessionListener = Callable[[SessionEvent, "SDError | None"], None]
"""Called on kazoo's connection thread: it must not block (hand work to :meth:`run_soon`)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the ensemble: the servers, the chroot, digest credentials, TLS,
    the request timeout and the session timeout."""

    hosts: tuple[str, ...]
    """Each ``host:port`` (an IPv6 host in brackets)."""
    chroot: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TLSSettings | None = None
    """None: plain TCP."""
    timeout: float = 10.0
    """Seconds to connect, or for an answer to a request."""
    session_timeout: float = 10.0

    @property
    def connect_string(self) -> str:
        """The ZooKeeper connect string: ``host:port,host:port/chroot``."""
        return ",".join(self.hosts) + self.chroot

    def describe(self) -> str:
        """``zookeeper at …`` for messages."""
        return f"zookeeper at {self.connect_string}"


class ZooKeeperClient:
    """One kazoo client (one session), started at once; :meth:`close` ends the session (and
    so every ephemeral node of it) and joins kazoo's threads."""

    def __init__(self, connection: Connection) -> None:
        from kazoo.client import KazooClient  # type: ignore[import-untyped]  # noqa: PLC0415
        from kazoo.retry import KazooRetry  # type: ignore[import-untyped]  # noqa: PLC0415

        self.connection = connection
        self.where = connection.describe()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[SessionListener] = []
        self._connected = False
        self._closed = False
        self._session_id: int | None = None
        self._lost: SDError | None = None
        self._generation = 0
        self._timer: concurrent.futures.Future[None] | None = None
        self.handler = _handler(",".join(connection.hosts))
        tls = connection.tls
        auth = (
            {("digest", f"{connection.username}:{connection.password or ''}")}
            if connection.username
            else None
        )
        # kazoo's default waits up to an hour between reconnection attempts: a session would
        # expire before the next one. Retry often, within the session timeout.
        retry = KazooRetry(
            max_tries=-1,
            delay=0.05,
            backoff=2,
            max_jitter=0.2,
            max_delay=max(0.1, min(1.0, connection.session_timeout / 4)),
            sleep_func=self.handler.sleep_func,
        )
        self.kazoo: Any = KazooClient(
            hosts=connection.connect_string,
            timeout=connection.session_timeout,
            auth_data=auth,
            handler=self.handler,
            connection_retry=retry,
            logger=kazoo_log,
            use_ssl=tls is not None,
            ca=tls.ca if tls else None,
            certfile=tls.cert if tls else None,
            keyfile=tls.key if tls else None,
            verify_certs=tls.verify if tls else True,
        )
        self.kazoo.add_listener(self._on_state)
        self._expire_after(connection.timeout, "could not connect")
        self.kazoo.start_async()

    # -- the session ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the client is connected now."""
        return self._connected

    @property
    def session_id(self) -> int | None:
        """The current session's id (None before the first connection)."""
        return self._session_id

    @property
    def lost(self) -> SDError | None:
        """Why the session is taken as lost now (None when connected or merely suspended)."""
        return self._lost

    def add_listener(self, listener: SessionListener) -> None:
        """Tell ``listener`` about each change of the session (see the module's doc)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: SessionListener) -> None:
        """Stop telling ``listener``."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wait_connected(self, what: str) -> None:
        """Return once connected; :class:`BackendUnavailableError` after ``timeout``."""
        timeout = self.connection.timeout
        with self._changed:
            done = clock().wait_for(self._changed, lambda: self._connected or self._closed, timeout)
            if done and self._connected:
                return
        raise BackendUnavailableError(
            f"{self.where}: {what}: not connected (no connection within {timeout:g} s)"
        )

    def _on_state(self, state: str) -> None:
        """kazoo's listener, on its connection thread: KazooState LOST, SUSPENDED, CONNECTED."""
        event: SessionEvent
        error: SDError | None = None
        with self._changed:
            if self._closed:
                return
            if state == "CONNECTED":
                session = self.kazoo.client_id[0] if self.kazoo.client_id else None
                if self._session_id is not None and session != self._session_id:
                    log.info("%s: new session 0x%x", self.where, session or 0)
                self._session_id = session
                self._connected, self._lost, event = True, None, "connected"
                self._cancel_timer()
            elif state == "SUSPENDED":
                self._connected, event = False, "suspended"
                self._expire_after(
                    self.connection.session_timeout, "disconnected for longer than the session"
                )
            else:
                self._connected, event = False, "lost"
                if self.kazoo.client_state == "AUTH_FAILED":
                    error = ConfigError(f"{self.where}: authentication failed")
                else:
                    error = BackendUnavailableError(
                        f"{self.where}: the session expired (ZooKeeper dropped it and its "
                        f"ephemeral nodes); a new one is being opened"
                    )
                self._lost = error
                self._cancel_timer()
            self._changed.notify_all()
            listeners = tuple(self._listeners)
        log.debug("%s: session %s", self.where, event)
        for listener in listeners:
            try:
                listener(event, error)
            except Exception:
                log.exception("%s: a session listener raised", self.where)

    def _expire_after(self, seconds: float, why: str) -> None:
        """After ``seconds`` without a connection, take the session as lost (call with the
        lock held, or before the client starts)."""
        self._cancel_timer()
        self._generation += 1
        generation = self._generation
        self._timer = core_loop().submit(self._expire(generation, seconds, why))

    def _cancel_timer(self) -> None:
        self._generation += 1
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    async def _expire(self, generation: int, seconds: float, why: str) -> None:
        try:
            await clock().sleep(seconds)
        except asyncio.CancelledError:
            return
        with self._changed:
            if self._closed or self._connected or generation != self._generation:
                return
            self._timer = None
            # Start over with a new session, as Curator does when it takes a session for
            # expired: a server whose state was lost refuses a client that saw a newer zxid
            # than its own ("client must try another server"), for ever.
            self.kazoo._reset_session()
            self.kazoo.last_zxid = 0
            error = self._lost = BackendUnavailableError(
                f"{self.where}: {why} timeout ({seconds:g} s): the session is taken as lost; "
                f"still trying to connect"
            )
            listeners = tuple(self._listeners)
        log.warning("%s", error)
        for listener in listeners:
            try:
                listener("lost", error)
            except Exception:
                log.exception("%s: a session listener raised", self.where)

    # -- requests -------------------------------------------------------------------------
    def run_soon(self, work: Callable[[], object]) -> None:
        """Run ``work`` on kazoo's callback thread, in order with the watch callbacks."""
        self.handler.callback_queue.put(work)

    def call(self, what: str, start: Callable[[Any], Any], *, wait: bool = False) -> Any:
        """Start a request (``start(kazoo)`` returns kazoo's async result) and wait for its
        answer, up to ``timeout``. Not connected: an error at once, or with ``wait`` once no
        connection came within ``timeout``. kazoo's errors become the core's, except the
        answers a caller handles (no node, node exists, not empty, bad version)."""
        if not self._connected:
            if not wait:
                raise BackendUnavailableError(f"{self.where}: {what}: not connected")
            self.wait_connected(what)
        try:
            return start(self.kazoo).get(timeout=self.connection.timeout)
        except Exception as exc:
            raise self.error(what, exc) from exc

    def collect(self, what: str, started: Iterable[tuple[T, Any]]) -> list[tuple[T, Any]]:
        """The answers to requests already sent (pipelined): ``(key, value or exception)``;
        the exceptions mapped as :meth:`call` maps them."""
        answers: list[tuple[T, Any]] = []
        for key, result in started:
            try:
                answers.append((key, result.get(timeout=self.connection.timeout)))
            except Exception as exc:
                answers.append((key, self.error(what, exc)))
        return answers

    def error(self, what: str, exc: BaseException) -> BaseException:
        """``exc`` as the core's error (the answers callers handle pass through as they are)."""
        from kazoo import exceptions as kz  # type: ignore[import-untyped]  # noqa: PLC0415

        passed: tuple[type[BaseException], ...] = (
            kz.NoNodeError,
            kz.NodeExistsError,
            kz.NotEmptyError,
            kz.BadVersionError,
            SDError,
        )
        if isinstance(exc, passed):
            return exc
        scrub_error(exc)
        name = type(exc).__name__
        detail = scrub(str(exc))
        detail = f"{name}: {detail}" if detail and detail != name else name
        error: SDError
        if isinstance(exc, kz.NoAuthError):
            error = ConfigError(
                f"{self.where}: {what}: permission denied (NoAuth): the node's ACL (or its "
                f"parent's, to create or delete) does not allow it for these credentials"
            )
        elif isinstance(exc, kz.InvalidACLError):
            error = ConfigError(
                f"{self.where}: {what}: ZooKeeper refused the ACL (InvalidACL); an auth:: entry "
                f"needs credentials (username and password)"
            )
        elif isinstance(exc, kz.AuthFailedError):
            error = ConfigError(f"{self.where}: {what}: authentication failed ({detail})")
        elif isinstance(exc, self.handler.timeout_exception):
            error = BackendUnavailableError(
                f"{self.where}: {what}: no answer within {self.connection.timeout:g} s"
            )
        else:
            error = BackendUnavailableError(f"{self.where}: {what}: {detail}")
        error.__cause__ = exc
        return error

    def forget_watch(self, path: str, callback: Callable[..., object]) -> None:
        """Drop ``callback`` from kazoo's watchers of ``path`` (ZooKeeper 3.8's watch removal is
        not in kazoo: the server's watch stays until it fires, and then nobody is called)."""
        for table in (self.kazoo._child_watchers, self.kazoo._data_watchers):
            watchers = table.get(path)
            if watchers is not None:
                watchers.discard(callback)
                if not watchers:
                    table.pop(path, None)

    # -- the end --------------------------------------------------------------------------
    def close(self) -> None:
        """End the session (ZooKeeper deletes its ephemeral nodes) and join kazoo's threads."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._connected = False
            self._cancel_timer()
            self._changed.notify_all()
        try:
            self.kazoo.stop()
        except Exception as exc:
            log.warning("%s: stopping the client: %s", self.where, scrub(str(exc)))
        finally:
            self.kazoo.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "connecting"
        return f"<ZooKeeperClient {self.connection.connect_string} {state}>"


def _handler(label: str) -> Any:
    """kazoo's threading handler, its threads named ``kazoo-<servers>``."""
    from kazoo.handlers.threading import (  # type: ignore[import-untyped]  # noqa: PLC0415
        SequentialThreadingHandler,
    )

    class NamedHandler(SequentialThreadingHandler):  # type: ignore[misc]
        def spawn(self, func: Callable[..., object], *args: Any, **kwargs: Any) -> threading.Thread:
            thread = threading.Thread(
                target=func, args=args, kwargs=kwargs, name=f"kazoo-{label}", daemon=True
            )
            thread.start()
            return thread

    return NamedHandler()
