"""A narrow wrapper over py-consul: the calls the plugin makes, with errors mapped onto sd_core's.

This is the only module that imports py-consul (import name ``consul``) and requests; the
backend imports it when it first makes a client, so importing :mod:`sd_consul` stays cheap.
Every call sends the ACL token; the token is never put in a message, a log line or a repr:
messages built from the libraries' errors go through :func:`sd_core._secrets.scrub`, and the
errors raised, with the exceptions chained to them, through :func:`~sd_core._secrets.scrub_error`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import consul  # type: ignore[import-untyped]
import requests
import requests.adapters
from consul.callback import CB  # type: ignore[import-untyped]
from consul.exceptions import (  # type: ignore[import-untyped]
    ACLDisabled,
    ACLPermissionDenied,
    BadRequest,
    ClientError,
    ConsulException,
    NotFound,
)
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from sd_core import BackendUnavailableError, ConfigError, RegistrationError, SDError
from sd_core._secrets import scrub, scrub_error

if TYPE_CHECKING:
    from ._backend import Connection

__all__ = ["TOO_MANY_CONNECTIONS", "AgentService", "ConsulClient", "HealthEntries"]

HealthEntries = list[dict[str, Any]]

_LOST_CHECK_MARKERS = ("does not have associated TTL", "Unknown check", "Unknown service")
"""What the agent answers about a check it does not know (its state was wiped)."""

TOO_MANY_CONNECTIONS = (
    "the agent refused the connection: this host has too many connections open to it "
    "(Consul's limits.http_max_conns_per_client, default 200, counts the connections of every "
    "process on this host's IP address, and keeps counting the blocking query of a stopped "
    "instancer until its wait ends); raise the limit in the agent's configuration "
    "(limits { http_max_conns_per_client = 1000 }) or open fewer connections: fewer "
    "instancers (those of the same service and options in one process share one watch) "
    "or fewer processes talking to this agent"
)
"""What Consul's refusal of a connection over its per-client limit is reported as."""

_CONNLIMIT_429 = "too many concurrent connections"
"""In the body of the 429 that later Consul versions send at the connection limit (1.8 closes
the connection without a word)."""


@dataclass(frozen=True)
class AgentService:
    """What the agent holds under a service id: nothing, a service of a name, or a service
    the token may not read (``exists`` and ``name`` None)."""

    exists: bool
    name: str | None = None

    def describe(self) -> str:
        """``service 'api'``, or a phrase for a service the token may not read."""
        if self.name is None:
            return "a service this ACL token may not read"
        return f"service {self.name!r}"


class _Sockets:
    """The connections a client opened, and which thread uses which, so that another thread
    can end one watch's blocking read (:meth:`interrupt`) or every call (:meth:`close`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[HTTPConnection | _Probe] = weakref.WeakSet()
        self._in_use: weakref.WeakValueDictionary[int, HTTPConnection] = (
            weakref.WeakValueDictionary()
        )
        self._interrupted: set[int] = set()
        self.closed = False

    def add(self, connection: HTTPConnection | _Probe) -> None:
        with self._lock:
            self._connections.add(connection)
            stop = self.closed or threading.get_ident() in self._interrupted
        if stop:  # opened while closing, or by an interrupted watch: do not let it block
            _shutdown(connection)

    def use(self, connection: HTTPConnection) -> None:
        """The calling thread sends a request on ``connection``."""
        me = threading.get_ident()
        with self._lock:
            self._in_use[me] = connection
            stop = self.closed or me in self._interrupted
        if stop:
            _shutdown(connection)

    def interrupt(self, thread: int) -> None:
        """End the call of ``thread`` now, and any it starts until :meth:`resume`."""
        with self._lock:
            self._interrupted.add(thread)
            connection = self._in_use.get(thread)
        if connection is not None:
            _shutdown(connection)

    def interrupted(self) -> bool:
        """True when the calling thread's calls are being ended (or the client closed)."""
        return self.closed or threading.get_ident() in self._interrupted

    def resume(self, thread: int) -> None:
        """Let ``thread`` make calls again."""
        with self._lock:
            self._interrupted.discard(thread)
            self._in_use.pop(thread, None)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def release(self) -> None:
        """Close every connection still open (after :meth:`close`, once no call is left): one
        that a pool took back as it was being closed would otherwise wait for the collector."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            if isinstance(connection, HTTPConnection):
                with contextlib.suppress(Exception):
                    connection.close()


class _Probe:
    """A bare socket, held as the connections are, so that closing the client ends its wait."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock


def _shutdown(connection: HTTPConnection | _Probe) -> None:
    sock = connection.sock
    if sock is not None:
        # socket.socket.shutdown, not SSLSocket's: a plain shutdown of the descriptor wakes the
        # reading thread without touching the TLS state it is using.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _interruptible_session_adapter(sockets: _Sockets) -> Any:
    """A requests adapter whose pools record each connection they open in ``sockets``."""

    class Plain(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self)

        def request(self, *args: Any, **kwargs: Any) -> None:
            sockets.use(self)
            super().request(*args, **kwargs)

    class Secure(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self)

        def request(self, *args: Any, **kwargs: Any) -> None:
            sockets.use(self)
            super().request(*args, **kwargs)

    class PlainPool(HTTPConnectionPool):
        ConnectionCls = Plain

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = Secure

    adapter = requests.adapters.HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {"http": PlainPool, "https": SecurePool}
    return adapter


class ConsulClient:
    """The agent's HTTP API as the plugin uses it.

    Registration calls raise :class:`RegistrationError`; discovery calls raise
    :class:`BackendUnavailableError` when the agent cannot be reached, does not answer in
    time or fails (5xx), and :class:`ConfigError` when it refuses (ACL, bad request).
    :meth:`close` ends any call in progress at once.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._sockets = _Sockets()
        with self._mapped("connect"):
            # host, port, scheme and verify are all given, so py-consul reads no environment
            # variable for them; its token defaults to CONSUL_HTTP_TOKEN even when one is
            # given, hence the assignment after.
            self._consul: Any = consul.Consul(
                host=_url_host(connection.host),
                port=connection.port,
                scheme=connection.scheme,
                verify=connection.verify,
                cert=connection.cert,
                connections_timeout=connection.timeout,
            )
        self._consul.token = connection.token
        adapter = _interruptible_session_adapter(self._sockets)
        session = self._consul.http.session
        session.mount("http://", adapter)
        session.mount("https://", adapter)

    # -- discovery -------------------------------------------------------------------------
    def health_service(
        self,
        service: str,
        *,
        index: int = 0,
        wait: float = 30.0,
        passing: bool = True,
        tag: str | None = None,
        dc: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        consistency: str = "default",
    ) -> tuple[int, HealthEntries]:
        """``GET /v1/health/service/<service>``; blocking when ``index`` > 0. Returns the new
        index and the entries (each with ``Node``, ``Service`` and ``Checks``)."""
        params: list[tuple[str, str]] = []
        if index > 0:
            params += [("index", str(index)), ("wait", _duration(wait))]
        if passing:
            params.append(("passing", "1"))
        if tag:
            params.append(("tag", tag))
        if dc:
            params.append(("dc", dc))
        for key, value in (node_meta or {}).items():
            params.append(("node-meta", f"{key}:{value}"))
        if consistency in ("stale", "consistent"):
            params.append((consistency, ""))
        with self._mapped(f"query service {service!r}"):
            new_index, entries = self._consul.http.get(
                CB.json(index=True),
                f"/v1/health/service/{service}",
                params=params,
                headers=self._consul.prepare_headers(),
            )
        if not isinstance(entries, list):
            raise BackendUnavailableError(
                f"consul at {self.connection.url}: unexpected answer for service {service!r}"
            )
        try:
            parsed_index = int(new_index)
        except (TypeError, ValueError):
            parsed_index = 0
        return parsed_index, entries

    def acl_blocks_anonymous(self) -> bool:
        """True when ACLs deny by default and no token was given (Consul then hides what it
        may not read instead of refusing). False when a token was given, ACLs are off, or
        they allow by default (an empty answer is then the truth)."""
        if self.connection.token:
            return False
        try:
            with self._mapped("read the ACL token", passthrough=(ACLDisabled,)):
                self._consul.acl.token.read_self()
        except ACLDisabled:
            return False
        except ConfigError as exc:
            if not isinstance(exc.__cause__, ACLPermissionDenied):
                return False
        else:
            return False
        # ACLs are on. Reading the agent needs agent:read, which the anonymous token has under
        # default-allow and lacks under default-deny.
        try:
            with self._mapped("read the agent"):
                self._consul.agent.self()
        except ConfigError as exc:
            return isinstance(exc.__cause__, ACLPermissionDenied)
        return False

    # -- registration ----------------------------------------------------------------------
    def register_service(self, definition: Mapping[str, Any]) -> None:
        """``PUT /v1/agent/service/register`` with ``definition`` (Consul's JSON field names)."""
        name = definition.get("Name")
        with self._mapped(f"register service {name!r}", registering=True):
            self._consul.http.put(
                CB.boolean(),
                "/v1/agent/service/register",
                params=[("replace-existing-checks", "true")],
                headers=self._consul.prepare_headers(),
                data=json.dumps(definition),
            )

    def service_owner(self, service_id: str) -> AgentService:
        """``GET /v1/agent/service/<id>``: which service, if any, the agent holds under
        ``service_id``. With ACLs, a service the token may not read is reported as existing
        with no name (a token that may register a service may read it)."""
        what = f"read service id {service_id!r}"
        try:
            with self._mapped(what, registering=True, passthrough=(ACLPermissionDenied,)):
                record = self._consul.http.get(
                    CB.json(allow_404=True),
                    f"/v1/agent/service/{service_id}",
                    headers=self._consul.prepare_headers(),
                )
        except ACLPermissionDenied as exc:
            if "ACL not found" in str(exc):
                self._raise(self._refused(what, exc, registering=True), exc)
            return AgentService(exists=True)
        if record is None:
            return AgentService(exists=False)
        if not isinstance(record, Mapping):
            raise RegistrationError(
                f"consul at {self.connection.url}: {what}: unexpected answer from the agent"
            )
        name = record.get("Service")
        return AgentService(exists=True, name=str(name) if name is not None else "")

    def deregister_service(self, service_id: str) -> None:
        """``PUT /v1/agent/service/deregister/<id>``; a service the agent does not know is
        already gone."""
        try:
            with self._mapped(
                f"deregister {service_id!r}", registering=True, passthrough=(ConsulException,)
            ):
                self._consul.agent.service.deregister(service_id)
        except ConsulException as exc:
            if _is_lost(exc):
                return
            self._raise(self._refused(f"deregister {service_id!r}", exc, registering=True), exc)

    def update_ttl(self, check_id: str, status: str, note: str = "") -> bool:
        """Set a TTL check to ``status`` (passing/warning/critical), resetting its clock.

        False when the agent does not know the check (it forgot the service)."""
        check = self._consul.agent.check
        call = {"passing": check.ttl_pass, "warning": check.ttl_warn, "critical": check.ttl_fail}
        try:
            with self._mapped(
                f"update check {check_id!r}", registering=True, passthrough=(ConsulException,)
            ):
                call[status](check_id, notes=note or None)
        except ConsulException as exc:
            if _is_lost(exc):
                return False
            self._raise(self._refused(f"update check {check_id!r}", exc, registering=True), exc)
        return True

    # -- lifecycle -------------------------------------------------------------------------
    def interrupt(self, thread: int) -> None:
        """End the call that ``thread`` is making (a blocking query) and any it starts until
        :meth:`resume`: how one watch stops while other users of the client go on."""
        self._sockets.interrupt(thread)

    def resume(self, thread: int) -> None:
        """Let ``thread`` make calls again after :meth:`interrupt`."""
        self._sockets.resume(thread)

    def close(self) -> None:
        """End any call in progress and release the connections (idempotent)."""
        self._sockets.close()
        self._consul.http.session.close()
        self._sockets.release()

    def __repr__(self) -> str:
        token = " token=<secret>" if self.connection.token else ""
        return f"<ConsulClient {self.connection.url}{token}>"

    # -- error mapping ---------------------------------------------------------------------
    @staticmethod
    def _raise(error: SDError, cause: BaseException) -> NoReturn:
        """Raise ``error`` from ``cause`` with every secret scrubbed from both (and from the
        rest of the chain), so that a traceback shows none either."""
        error.__cause__ = cause
        error.__suppress_context__ = True
        scrub_error(error)
        raise error

    @contextlib.contextmanager
    def _mapped(
        self,
        what: str,
        *,
        registering: bool = False,
        passthrough: Sequence[type[BaseException]] = (),
    ) -> Iterator[None]:
        """Map requests' and py-consul's errors onto sd_core's, like httpx's
        ``map_httpcore_exceptions``; ``passthrough`` errors are left to the caller.

        Registration calls raise :class:`RegistrationError` whatever the cause; otherwise an
        agent out of reach is :class:`BackendUnavailableError` and a refusal
        :class:`ConfigError`.
        """
        unavailable = RegistrationError if registering else BackendUnavailableError
        where = f"consul at {self.connection.url}"
        try:
            yield
        except tuple(passthrough):
            raise
        except requests.Timeout as exc:
            self._raise(
                unavailable(
                    f"{where}: {what}: no answer within the timeout "
                    f"({self.connection.timeout:g} s, plus the wait of a blocking query)"
                ),
                exc,
            )
        except requests.exceptions.SSLError as exc:
            if _closed_without_answer(exc) and self._agent_refuses_connections():
                self._raise(unavailable(f"{where}: {what}: {TOO_MANY_CONNECTIONS}"), exc)
            self._raise(unavailable(f"{where}: {what}: TLS failed: {scrub(str(exc))}"), exc)
        except requests.ConnectionError as exc:
            if _closed_without_answer(exc) and self._agent_refuses_connections():
                self._raise(unavailable(f"{where}: {what}: {TOO_MANY_CONNECTIONS}"), exc)
            self._raise(
                unavailable(f"{where}: {what}: cannot reach the agent: {_reason(exc)}"), exc
            )
        except requests.RequestException as exc:
            self._raise(
                unavailable(f"{where}: {what}: {type(exc).__name__}: {scrub(str(exc))}"), exc
            )
        except ConsulException as exc:
            self._raise(self._refused(what, exc, registering=registering), exc)

    def _agent_refuses_connections(self) -> bool:
        """True when the agent accepts a TCP connection and closes it at once, before being
        sent anything: what Consul 1.8 does to every new connection from an IP address that
        has ``limits.http_max_conns_per_client`` connections open. A serving agent waits for
        the request instead; a stopped one refuses the connection. Two probes, so that an
        agent closing its listener as it shuts down is not taken for one at its limit."""
        return self._probe_closed() and self._probe_closed()

    def _probe_closed(self) -> bool:
        if self._sockets.interrupted():  # we ended the call: not the agent's doing
            return False
        window = min(1.0, self.connection.timeout)
        try:
            with socket.create_connection(
                (self.connection.host, self.connection.port), timeout=self.connection.timeout
            ) as sock:
                probe = _Probe(sock)
                self._sockets.add(probe)  # close() ends the wait
                sock.settimeout(window)
                try:
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    return False  # the agent is waiting for a request: it took the connection
                except ConnectionResetError:
                    closed = True
                return closed and not self._sockets.interrupted()
        except OSError:
            return False

    def _refused(self, what: str, exc: Exception, *, registering: bool) -> SDError:
        refused = RegistrationError if registering else ConfigError
        unavailable = RegistrationError if registering else BackendUnavailableError
        detail = scrub(str(exc).strip()) or type(exc).__name__
        where = f"consul at {self.connection.url}"
        if isinstance(exc, ACLPermissionDenied):
            if "ACL not found" in detail:
                return refused(f"{where}: {what}: Consul does not know the ACL token given")
            hint = "" if self.connection.token else " (no ACL token was given)"
            return refused(f"{where}: {what}: permission denied by ACL{hint}: {detail}")
        if isinstance(exc, ClientError) and detail.startswith("429"):
            if _CONNLIMIT_429 in detail.lower():
                return unavailable(f"{where}: {what}: {TOO_MANY_CONNECTIONS}")
            return unavailable(f"{where}: {what}: the agent limits the rate of calls: {detail}")
        if isinstance(exc, ACLDisabled | BadRequest | ClientError | NotFound):
            return refused(f"{where}: {what}: {detail}")
        # 5xx: the agent or its servers are in trouble (no leader, no path to the datacenter).
        return unavailable(f"{where}: {what}: {detail}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its arguments that are exceptions (urllib3 wraps its causes there) and its
    causes, depth first, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        for link in (current.__cause__, current.__context__):
            if link is not None:
                stack.append(link)


def _closed_without_answer(exc: BaseException) -> bool:
    """The agent took the connection and closed it without an answer (rather than refusing
    it, timing out or failing the TLS verification)."""
    causes = list(_chain(exc))
    if any(isinstance(cause, NewConnectionError) for cause in causes):
        return False  # the connection was never made
    return any(
        isinstance(
            cause,
            http.client.RemoteDisconnected
            | ConnectionResetError
            | BrokenPipeError
            | ssl.SSLEOFError
            | ssl.SSLZeroReturnError,
        )
        for cause in causes
    )


def _reason(exc: BaseException) -> str:
    """A short reason for a connection failure: the innermost OS error's text, else the name
    of the error."""
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(exc).__name__}: {scrub(cause.strerror)}"
    return type(exc).__name__


def _url_host(host: str) -> str:
    """``host`` as it is written in a URL: an IPv6 address between brackets, its zone with
    its ``%`` escaped (py-consul puts the host in its base URL as it is given)."""
    return f"[{host.replace('%', '%25')}]" if ":" in host else host


def _is_lost(exc: Exception) -> bool:
    return isinstance(exc, NotFound) or any(marker in str(exc) for marker in _LOST_CHECK_MARKERS)


def _duration(seconds: float) -> str:
    """Seconds as a Go duration in milliseconds (``"1500ms"``)."""
    return f"{max(1, round(seconds * 1000))}ms"
