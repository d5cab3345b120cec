"""A narrow wrapper over aetcd: the calls the plugin makes, on one gRPC channel, failing over
from one endpoint to the next, with errors mapped onto sd_core's.

This is the only module that imports aetcd and grpc; the backend imports it when it first
makes a client, so importing :mod:`sd_etcd` stays cheap. Every coroutine here runs on the
core's event loop.

Where aetcd falls short, this module makes up for it:

* aetcd opens only plaintext channels to one ``host:port``: :class:`_Session` (an
  ``aetcd.Client``) opens the channel itself, with TLS credentials and channel options
  (keepalive pings, fast reconnection, large answers), and :class:`EtcdClient` moves to the
  next endpoint when one fails;
* aetcd authenticates once: a token that etcd no longer knows (a member restarted, or the
  token expired) is renewed and the call made again; etcd without authentication enabled is
  fine with a user and password (as etcd's Go client does);
* aetcd's watcher multiplexes every watch on one stream and reports neither a cancelled
  watch nor a stream that ended: :class:`WatchStream` is one watch stream of its own, on
  the same channel, that reports both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import aetcd  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
from aetcd import rpc

from sd_core import BackendUnavailableError, ConfigError, RegistrationError, SDError
from sd_core.plugin import Address, clock, core_loop, logger, scrub, scrub_error

from ._connection import Connection

__all__ = ["Change", "Compacted", "EtcdClient", "StreamLost", "WatchStream"]

log = logger("sd_etcd")

T = TypeVar("T")

_MiB = 1024 * 1024
_KEEPALIVE_MS = 10_000
"""gRPC keepalive pings while a call is open: etcd refuses pings closer than 5 s apart (its
--grpc-keepalive-min-time), and a watch on a frozen member is declared lost one timeout after
an unanswered ping."""

_UNAVAILABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED"}
)
_PASSING_PAUSE = 0.25
"""Seconds before a call refused by a member in a leader election is made again."""
_STALE_TOKEN = ("invalid auth token", "revision of auth store is old", "auth token")


class _Retired(Exception):
    """A call on the session of an endpoint the client left."""


class Compacted(Exception):
    """The revision a watch was to start from is gone (etcd compacted its history)."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"etcd compacted its history up to revision {revision}")
        self.revision = revision


class StreamLost(Exception):
    """A watch stream ended (the member went away, the channel moved to another endpoint,
    etcd cancelled the watch): read again and watch from the new revision."""


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a watch: the key, its new value (None: deleted) and its revision."""

    key: bytes
    value: bytes | None
    revision: int


class _Session(aetcd.Client):  # type: ignore[misc]
    """aetcd's client on one endpoint, over a channel made here (aetcd makes only plaintext
    channels), authenticated again when etcd forgets its token."""

    channel: Any
    metadata: Any

    def __init__(
        self,
        target: str,
        credentials: Any,
        connection: Connection,
        options: dict[str, Any],
    ) -> None:
        super().__init__(
            username=connection.username,
            password=connection.password,
            timeout=connection.timeout,
            options=options,
        )
        self.target = target
        self._credentials = credentials
        self.watchstub: Any = None
        self.retired = False

    async def close(self) -> None:
        """Close the channel for good (its calls end)."""
        self.retired = True
        await super().close()

    async def connect(self) -> None:
        """Open the channel (once) and authenticate (until it succeeds)."""
        if self._connected.is_set():
            return
        if self.retired:  # closed when the client moved on: never open it again
            raise _Retired(f"the channel to {self.target} was closed")
        if self.channel is None:
            options = list(self._options.items())
            if self._credentials is None:
                self.channel = grpc.aio.insecure_channel(self.target, options=options)
            else:
                self.channel = grpc.aio.secure_channel(
                    self.target, self._credentials, options=options
                )
            self.kvstub = rpc.KVStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self.watchstub = rpc.WatchStub(self.channel)
        await self.authenticate()
        self._connected.set()

    async def authenticate(self) -> None:
        """Get a new token (none without a user, or when etcd has authentication off)."""
        if self._username is None:
            self.metadata = None
            return
        request = rpc.AuthenticateRequest(name=self._username, password=self._password)
        try:
            answer = await rpc.AuthStub(self.channel).Authenticate(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "not enabled" in (
                exc.details() or ""
            ):
                self.metadata = None
                return
            raise
        self.metadata = (("token", answer.token),)

    def __repr__(self) -> str:
        return f"<_Session {self.target}>"


def _channel_options(connection: Connection) -> dict[str, Any]:
    timeout_ms = max(1000, round(connection.timeout * 1000))
    return {
        "grpc.max_receive_message_length": 256 * _MiB,  # a service of many instances
        "grpc.keepalive_time_ms": _KEEPALIVE_MS,
        "grpc.keepalive_timeout_ms": timeout_ms,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.keepalive_permit_without_calls": 0,
        # Reconnect within a second of a member coming back (gRPC's default backoff grows to
        # two minutes), and give a connection attempt the timeout to complete.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.min_reconnect_backoff_ms": timeout_ms,
    }


def _credentials(connection: Connection) -> Any:
    if connection.tls is None:
        return None
    ca, cert, key = connection.tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=key if key is not None else cert,  # a PEM may hold both
        certificate_chain=cert,
    )


def _rpc_error(exc: BaseException) -> Any:
    """The gRPC error behind ``exc`` (aetcd raises its own errors from them), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, grpc.aio.AioRpcError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _status(exc: BaseException) -> tuple[str, str]:
    """The gRPC status name and details of ``exc`` (``CLOSED`` for a call on a channel that
    was closed, ``DEADLINE_EXCEEDED`` for an asyncio timeout)."""
    error = _rpc_error(exc)
    if error is not None:
        return error.code().name, str(error.details() or "")
    if isinstance(exc, grpc.aio.UsageError | asyncio.CancelledError | _Retired):
        return "CLOSED", "the channel was closed"
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED", "no answer"
    return "UNKNOWN", f"{type(exc).__name__}: {exc}"


def _cancelling() -> bool:
    """True when the current task itself is being cancelled (not a call of it ended by the
    closing of its channel, which grpc.aio reports as a CancelledError too)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class EtcdClient:
    """The plugin's client of one etcd cluster: one gRPC channel (to one endpoint at a time)
    shared by every instancer and registrar of the same connection options.

    A call that fails because the endpoint is unreachable, does not answer or has no leader
    is made again on the next endpoint (each endpoint once); the channel then moves there,
    which ends the watch streams of the old one (they read again on the new one). A call
    refused during a leader election is made again on the same endpoint.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._credentials = _credentials(connection)
        self._options = _channel_options(connection)
        self._index = 0
        self._generation = 0
        self._session: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> Address:
        """The endpoint the channel uses now."""
        return self.connection.endpoints[self._index]

    @property
    def where(self) -> str:
        """``etcd at <url>`` of the current endpoint, for messages."""
        return f"etcd at {self.connection.url(self.endpoint)}"

    # -- the calls ---------------------------------------------------------------------------
    async def read(self, prefix: str) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Every key under ``prefix`` with its value, and the revision they were read at."""

        async def op(session: _Session) -> tuple[int, list[tuple[bytes, bytes]]]:
            result = await session.get_prefix(prefix.encode())
            return int(result.header.revision), [(kv.key, kv.value) for kv in result.kvs]

        return await self._call(f"read {prefix!r}", op, key=prefix, access="read")

    async def grant(self, ttl: int, key: str) -> tuple[int, int]:
        """A new lease of ``ttl`` seconds (for ``key``): its id and the TTL etcd granted."""

        async def op(session: _Session) -> tuple[int, int]:
            lease = await session.lease(ttl)
            return int(lease.id), int(lease.ttl)

        return await self._call(f"grant a lease of {ttl} s for {key!r}", op, registering=True)

    async def put(self, key: str, value: bytes, lease: int) -> None:
        """Put ``key`` with ``value``, attached to ``lease``."""

        async def op(session: _Session) -> None:
            await session.put(key.encode(), value, lease=lease)

        await self._call(f"put {key!r}", op, registering=True, key=key, access="write")

    async def keepalive(self, lease: int, key: str) -> int:
        """Renew ``lease`` (of ``key``); the TTL it has now, 0 when etcd no longer knows it."""

        async def op(session: _Session) -> int:
            reply = await session.refresh_lease(lease)
            if reply is None:
                raise RegistrationError(
                    f"{self.where}: renew the lease {lease:x} of {key!r}: etcd ended the "
                    f"keepalive without an answer"
                )
            return int(reply.TTL)

        return await self._call(f"renew the lease {lease:x} of {key!r}", op, registering=True)

    async def delete_if_leased(self, key: str, lease: int) -> None:
        """Delete ``key`` if it is still attached to ``lease`` (not if another registrar put it
        again since)."""
        compare = _LeaseCompare(key.encode(), lease)

        async def op(session: _Session) -> None:
            delete = session.transactions.delete(key.encode())
            await session.transaction(compare=[compare], success=[delete], failure=[])

        await self._call(f"delete {key!r}", op, registering=True, key=key, access="write")

    async def revoke(self, lease: int, key: str) -> None:
        """Revoke ``lease`` (of ``key``); one that etcd no longer knows is already gone."""

        async def op(session: _Session) -> None:
            try:
                await session.revoke_lease(lease)
            except aetcd.ClientError as exc:
                if _status(exc)[0] != "NOT_FOUND":
                    raise

        await self._call(
            f"revoke the lease {lease:x} of {key!r}", op, registering=True, key=key, access="write"
        )

    def watch(self, prefix: str, start_revision: int) -> WatchStream:
        """A watch of every key under ``prefix`` from ``start_revision`` (an async context
        manager; :meth:`WatchStream.next` gives the changes)."""
        return WatchStream(self, prefix, start_revision)

    # -- the channel -----------------------------------------------------------------------
    async def _current(self) -> tuple[_Session, int]:
        """The session of the current endpoint, connected, and its generation."""
        if self._closed:
            raise BackendUnavailableError(f"{self.where}: the client is closed")
        session = self._session
        if session is not None and session._connected.is_set():
            return session, self._generation
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise BackendUnavailableError(f"{self.where}: the client is closed")
            if self._session is None:
                self._session = _Session(
                    self.endpoint.netloc, self._credentials, self.connection, self._options
                )
            generation = self._generation
            await self._session.connect()
            return self._session, generation

    async def _move_on(self, generation: int, reason: str) -> None:
        """Leave the current endpoint for the next one (if no other call did already)."""
        if generation != self._generation or len(self.connection.endpoints) < 2:
            return
        old, old_where = self._session, self.where
        self._session = None
        self._index = (self._index + 1) % len(self.connection.endpoints)
        self._generation += 1
        log.warning("%s: %s; moving to %s", old_where, scrub(reason), self.where)
        if old is not None:
            self._in_background(old.close())

    async def _renew_token(self, session: _Session, token: object) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if session.metadata is token:  # no other call renewed it meanwhile
                log.info("%s: the auth token expired; authenticating again", self.where)
                await session.authenticate()

    def _in_background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call(
        self,
        what: str,
        op: Callable[[_Session], Awaitable[T]],
        *,
        registering: bool = False,
        key: str | None = None,
        access: str = "read",
    ) -> T:
        """``op`` on the current session; made again on the next endpoints when this one is
        unreachable, and once more after a new token when etcd forgot ours."""
        attempts = len(self.connection.endpoints) + 1
        renewed = False
        while True:
            generation, session, token = self._generation, self._session, None
            try:
                session, generation = await self._current()
                token = session.metadata
                return await op(session)
            except asyncio.CancelledError as exc:
                if _cancelling():
                    raise
                failure: BaseException = exc
            except SDError:
                raise
            except Exception as exc:
                failure = exc
            code, details = _status(failure)
            if session is not None and not renewed and _is_stale_token(code, details):
                renewed = True
                try:
                    await self._renew_token(session, token)
                except Exception as exc:
                    failure = exc
                    code, details = _status(exc)
                else:
                    continue
            if attempts > 1 and (code in _UNAVAILABLE or code == "CLOSED"):
                attempts -= 1
                if code == "CLOSED":
                    continue  # another call moved the channel on: try the new one
                if _passing(code, details):
                    await clock().sleep(_PASSING_PAUSE)  # a leader election: try again here
                    continue
                if len(self.connection.endpoints) > 1:
                    await self._move_on(generation, f"{what} failed: {details}")
                    continue
            self._raise(what, failure, registering=registering, key=key, access=access)

    # -- errors ------------------------------------------------------------------------------
    def _raise(
        self,
        what: str,
        exc: BaseException,
        *,
        registering: bool,
        key: str | None = None,
        access: str = "read",
    ) -> NoReturn:
        error = self.error(what, exc, registering=registering, key=key, access=access)
        error.__cause__ = exc
        error.__suppress_context__ = True
        scrub_error(error)
        raise error

    def error(
        self,
        what: str,
        exc: BaseException,
        *,
        registering: bool,
        key: str | None = None,
        access: str = "read",
    ) -> SDError:
        """The sd_core error that ``exc`` (a failed ``what``) becomes, like httpx's
        ``map_httpcore_exceptions``: a registration call raises :class:`RegistrationError`
        whatever the cause; otherwise etcd out of reach is :class:`BackendUnavailableError`
        and a refusal (permission, credentials) :class:`ConfigError`."""
        code, details = _status(exc)
        return self.error_for(what, code, details, registering=registering, key=key, access=access)

    def error_for(
        self,
        what: str,
        code: str,
        details: str,
        *,
        registering: bool,
        key: str | None = None,
        access: str = "read",
    ) -> SDError:
        """The sd_core error of a failed ``what`` with gRPC status ``code`` (its name) and
        ``details`` (see :meth:`error`)."""
        details = scrub(details) or code
        unavailable = RegistrationError if registering else BackendUnavailableError
        refused = RegistrationError if registering else ConfigError
        where = self.where
        several = len(self.connection.endpoints) > 1
        tried = f" (tried every endpoint: {self._endpoints()})" if several else ""
        user = self.connection.username
        if code == "DEADLINE_EXCEEDED":
            timeout = self.connection.timeout
            return unavailable(f"{where}: {what}: no answer within {timeout:g} s{tried}")
        if code in _UNAVAILABLE or code == "CLOSED":
            return unavailable(f"{where}: {what}: cannot reach etcd: {details}{tried}")
        if code == "PERMISSION_DENIED":
            who = f"user {user!r}" if user else "this client (no username given)"
            target = f"the key {key!r}" if key and not key.endswith("/") else f"keys {key!r}*"
            perm = "write (readwrite)" if access == "write" else "read"
            return refused(
                f"{where}: {what}: permission denied: {who} has no {perm} permission on "
                f"{target if key else 'it'} (etcd grants permissions on keys and prefixes "
                f"through roles: etcdctl role grant-permission)"
            )
        if "authentication failed" in details:
            return refused(
                f"{where}: authentication failed: wrong username or password (user {user!r})"
            )
        if "user name is empty" in details or (code == "UNAUTHENTICATED" and not user):
            return refused(
                f"{where}: {what}: etcd has authentication enabled and no username and "
                f"password were given (options username and password)"
            )
        if code == "UNAUTHENTICATED":
            return refused(f"{where}: {what}: etcd refused the credentials: {details}")
        if code in ("NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"):
            return refused(f"{where}: {what}: etcd refused it: {details}")
        return unavailable(f"{where}: {what}: {details}")

    def _endpoints(self) -> str:
        return ", ".join(self.connection.url(e) for e in self.connection.endpoints)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel (idempotent), from any thread; its calls and watches end."""
        loop = core_loop()
        if loop.in_loop():  # released by an async registrar's close, on the loop itself
            self._closed = True
            self._in_background(self._aclose())
        else:
            loop.call(self._aclose(), timeout=max(10.0, self.connection.timeout))

    async def _aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        pending = [task for task in self._background if task is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=max(10.0, self.connection.timeout))

    def __repr__(self) -> str:
        user = f" user={self.connection.username!r}" if self.connection.username else ""
        return f"<EtcdClient {self._endpoints()}{user}>"


def _passing(code: str, details: str) -> bool:
    """A refusal of the member's own that should pass (a leader being elected, a proposal
    that timed out, too many requests), rather than the member being out of reach or cut
    off from the cluster (no leader): the call is made again on the same member."""
    server_side = details.startswith("etcdserver:") and "no leader" not in details
    return code == "RESOURCE_EXHAUSTED" or (code == "UNAVAILABLE" and server_side)


def _is_stale_token(code: str, details: str) -> bool:
    return code in ("UNAUTHENTICATED", "INVALID_ARGUMENT") and any(
        marker in details for marker in _STALE_TOKEN
    )


class _LeaseCompare:
    """A transaction comparison on a key's lease (aetcd's transactions lack this target)."""

    def __init__(self, key: bytes, lease: int) -> None:
        self.key = key
        self.lease = lease

    def build_message(self) -> Any:
        return rpc.Compare(
            key=self.key, target=rpc.Compare.LEASE, result=rpc.Compare.EQUAL, lease=self.lease
        )


class WatchStream:
    """One watch stream of a key prefix, on the client's channel.

    ``async with client.watch(prefix, revision) as stream`` creates the watch (etcd answers
    that it did, or why not); ``await stream.next()`` gives the changes of the next answer
    with events. Raises :class:`Compacted` when the start revision is gone,
    :class:`StreamLost` when the stream ends for any other reason, and sd_core's errors for
    a refusal (permission)."""

    def __init__(self, client: EtcdClient, prefix: str, start_revision: int) -> None:
        self.client = client
        self.prefix = prefix
        self.start_revision = start_revision
        self._call: Any = None

    async def __aenter__(self) -> WatchStream:
        client = self.client
        key = self.prefix.encode()
        create = rpc.WatchCreateRequest(
            key=key, range_end=aetcd.utils.prefix_range_end(key), start_revision=self.start_revision
        )
        with self._lost():
            session, _ = await client._current()
            metadata = (*(session.metadata or ()), ("hasleader", "true"))  # ends without one
            self._call = session.watchstub.Watch(metadata=metadata)
            await self._call.write(rpc.WatchRequest(create_request=create))
            try:
                answer = await asyncio.wait_for(self._call.read(), client.connection.timeout)
            except TimeoutError:
                raise StreamLost(
                    f"no answer to the watch request within {client.connection.timeout:g} s"
                ) from None
        self._check(answer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._call is not None:
            self._call.cancel()

    async def next(self) -> list[Change]:
        """The changes of the next answer that has events."""
        while True:
            with self._lost():
                answer = await self._call.read()
            self._check(answer)
            if answer.events:
                return [
                    Change(
                        bytes(event.kv.key),
                        None if event.type == rpc.Event.DELETE else bytes(event.kv.value),
                        int(event.kv.mod_revision),
                    )
                    for event in answer.events
                ]

    def _check(self, answer: Any) -> None:
        if answer is grpc.aio.EOF:
            raise StreamLost("etcd ended the watch stream")
        if answer.compact_revision:
            raise Compacted(int(answer.compact_revision))
        if answer.canceled:
            reason = scrub(str(answer.cancel_reason or "")) or "no reason given"
            if "permission denied" in reason:
                raise self.client.error_for(
                    f"watch {self.prefix!r}",
                    "PERMISSION_DENIED",
                    reason,
                    registering=False,
                    key=self.prefix,
                )
            raise StreamLost(f"etcd cancelled the watch: {reason}")

    @contextlib.contextmanager
    def _lost(self) -> Any:
        """Errors of the stream as :class:`StreamLost` (or sd_core's, for a refusal)."""
        try:
            yield
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            raise StreamLost("the channel was closed (it moved to another endpoint)") from exc
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            if code == "PERMISSION_DENIED":
                what = f"watch {self.prefix!r}"
                self.client._raise(what, exc, registering=False, key=self.prefix)
            raise StreamLost(f"{code}: {scrub(str(exc.details() or ''))}") from exc
        except (grpc.aio.UsageError, _Retired) as exc:
            raise StreamLost("the channel was closed (it moved to another endpoint)") from exc
