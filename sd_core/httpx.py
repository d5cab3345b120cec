"""httpx transports that call the instances of discovered services.

``httpx.Client(transport=Transport({"web": instancer}))`` sends ``http://web/path`` to an
instance of ``web`` picked by a balancer: one connection pool per instance, closed once the
instance has left and its requests have ended; every request a ``choose()`` of the balancer
(so its latency and outcome reach it); connection failures, and for idempotent requests the
statuses you list, tried again on another instance within a deadline. ``AsyncTransport`` is the
same for ``httpx.AsyncClient``. Needs the ``httpx`` extra: ``pip install "sd-core[httpx]"``.
"""

from __future__ import annotations

try:
    import httpx
except ImportError:  # pragma: no cover - exercised by a test in a fresh interpreter
    raise ImportError(
        "sd_core.httpx needs httpx, which is not installed; install it with: "
        'pip install "sd-core[httpx]"'
    ) from None

import asyncio
import ssl
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ._balance import LeastPending
from ._clock import clock
from ._errors import NoEndpointsError
from ._held_choice import aexit_choice, exit_choice
from ._httpx_policy import INSTANCE_EXTENSION, KeyFunction, Policy, RetryCallback
from ._httpx_pools import AsyncPool, AsyncReleasingStream, Pool, ReleasingStream
from ._instance import Instance
from ._routes import BalancerFactory, Route, Routes, Source

__all__ = ["AsyncTransport", "Transport"]


class _SharedTLS:
    """The default pools of a transport share one TLS context (httpx's default): building one
    loads the CA bundle, which costs more than the rest of a pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = httpx.create_ssl_context()
            return self._context

    def pool(self, instance: Instance) -> httpx.HTTPTransport:
        return httpx.HTTPTransport(verify=self.context())

    def async_pool(self, instance: Instance) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=self.context())


class _Base:
    """What both transports share and do without I/O (as httpx's ``BaseClient``)."""

    _routes: Routes[Any]

    def __init__(
        self,
        *,
        balancer: BalancerFactory,
        max_attempts: int,
        deadline: float | None,
        retry_statuses: Collection[int],
        failure_statuses: Collection[int],
        key: KeyFunction | None,
        callback: RetryCallback | None,
        drain_timeout: float,
    ) -> None:
        self._policy = Policy(
            max_attempts=max_attempts,
            deadline=deadline,
            retry_statuses=retry_statuses,
            failure_statuses=failure_statuses,
            key=key,
            callback=callback,
        )
        self._balancer = balancer
        self._drain_timeout = drain_timeout
        self._closed = False

    def _route_maker(
        self, factory: Callable[[Instance], Any]
    ) -> Callable[[str, Source], Route[Any]]:
        def make(name: str, source: Source) -> Route[Any]:
            return Route(
                name,
                source,
                factory,
                self._balancer,
                keyed=self._policy.key is not None,
                drain_timeout=self._drain_timeout,
            )

        return make

    def _route(self, request: httpx.Request) -> Route[Any]:
        if self._closed:
            raise RuntimeError("cannot send a request: the sd_core.httpx transport is closed")
        return self._routes.route(request.url.host)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        services = ", ".join(route.name or "*" for route in self._routes.all())
        return f"<{type(self).__name__} {services} {self._policy!r}{state}>"


class Transport(_Base, httpx.BaseTransport):
    """An httpx transport that sends each request to an instance of the service it names.

    ``services`` is a mapping from host name to service: ``{"web": instancer}`` sends
    ``http://web/...`` to the instances of that instancer (an :class:`~sd_core.Instancer`, or a
    backend URL such as ``"consul://127.0.0.1:8500/web"``, for which the transport makes an
    instancer of its own and stops it on close); a request to another host raises
    :class:`~sd_core.NoEndpointsError`. A single instancer or URL serves every host, for httpx's
    ``mounts={"http://web": Transport(instancer)}``. The URL's port is ignored (the instance's
    is used); the ``Host`` header keeps the service's name, and for https so do the TLS server
    name and the certificate check.

    ``factory(instance)`` makes the connection pool of an instance (default
    ``httpx.HTTPTransport()``, all sharing one TLS context; pass your own for client
    certificates, HTTP/2, limits); it is closed once the
    instance has left and its requests have ended (at most ``drain_timeout`` seconds later).
    ``balancer`` makes the balancer of each service from its :class:`~sd_core.Endpointer`
    (default :class:`~sd_core.LeastPending`); ``key(request)`` gives it a key
    (:class:`~sd_core.ConsistentHash` needs one).

    Each attempt is a ``choose()`` of the balancer lasting until its response is closed: its
    latency and outcome reach the balancer. A failure is an exception (connection error,
    timeout, protocol error) or a status in ``failure_statuses`` or ``retry_statuses``.
    Up to ``max_attempts`` attempts, each on an instance not tried yet while there is one:
    after an error raised before the request was sent (connect error or timeout, pool
    timeout) whatever the method, and after any other transport error, or a status in
    ``retry_statuses``, for an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)
    with a body in memory. ``deadline`` (seconds) bounds the whole request: each attempt's
    timeouts are cut to the time left. ``callback(attempt, error)`` runs after each failed
    attempt that is to be tried again; returning ``False`` stops there.

    While the service has no instance, a request waits for one up to its pool timeout
    (``httpx.Timeout(pool=...)``, the time httpx waits for a connection), within the deadline,
    then raises :class:`~sd_core.NoEndpointsError`. A request whose attempts all raised raises
    :class:`~sd_core.RetryError` holding every attempt's error (an ``ExceptionGroup``: catch
    ``httpx.TransportError`` with ``except*``). A response, whatever its status, is returned
    (the last one when statuses were retried); ``response.extensions["sd_instance"]`` is the
    :class:`~sd_core.Instance` that answered.
    """

    def __init__(
        self,
        services: Source | Mapping[str, Source],
        factory: Callable[[Instance], httpx.BaseTransport] | None = None,
        *,
        balancer: BalancerFactory = LeastPending,
        max_attempts: int = 3,
        deadline: float | None = None,
        retry_statuses: Collection[int] = (),
        failure_statuses: Collection[int] = (),
        key: KeyFunction | None = None,
        callback: RetryCallback | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            balancer=balancer,
            max_attempts=max_attempts,
            deadline=deadline,
            retry_statuses=retry_statuses,
            failure_statuses=failure_statuses,
            key=key,
            callback=callback,
            drain_timeout=drain_timeout,
        )
        make = _SharedTLS().pool if factory is None else factory

        def pool(instance: Instance) -> Pool:
            return Pool(instance, make(instance))

        self._routes = Routes(services, self._route_maker(pool))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to an instance of its service (see the class)."""
        route = self._route(request)
        policy = self._policy
        key = None if policy.key is None else policy.key(request)
        replayable = policy.replayable(request)
        deadline = policy.deadline_at()
        errors: list[Exception] = []
        tried: list[Pool] = []
        for attempt in range(1, policy.max_attempts + 1):
            remaining = deadline - clock().monotonic()
            if remaining <= 0:
                break
            wait = policy.wait(request, remaining)
            choice = route.balancer.choose(key, timeout=wait, avoid=tried)
            try:
                pool: Pool = choice.__enter__()
            except (NoEndpointsError, TimeoutError) as exc:
                if not errors:
                    raise policy.no_instance(route.name or request.url.host, exc, wait) from None
                errors.append(exc)
                break
            try:
                response = pool.transport.handle_request(
                    policy.attempt(request, pool.instance, deadline - clock().monotonic())
                )
            except Exception as exc:
                exit_choice(choice, exc)
                errors.append(exc)
                tried.append(pool)
                if policy.again(
                    attempt, exc, policy.retry_error(exc, request, replayable), deadline
                ):
                    continue
                break
            except BaseException as exc:
                exit_choice(choice, exc)
                raise
            if policy.retry_status(response.status_code, request, replayable):
                error = policy.status_error(request, response, pool.instance)
                if policy.again(attempt, error, True, deadline):
                    _discard(response)
                    exit_choice(choice, error)
                    errors.append(error)
                    tried.append(pool)
                    continue
            return _released(
                response, choice, policy.failure(request, response, pool.instance), pool
            )
        raise policy.give_up(route.name or request.url.host, errors)

    def close(self) -> None:
        """Close every pool, once its requests have ended (bounded by ``drain_timeout``), and
        stop the instancers this transport made from URLs (``httpx.Client.close()`` calls
        this)."""
        if self._closed:
            return
        self._closed = True
        self._routes.close()


class AsyncTransport(_Base, httpx.AsyncBaseTransport):
    """The async twin of :class:`Transport`, for ``httpx.AsyncClient``: the same arguments,
    with ``factory(instance)`` making an ``httpx.AsyncBaseTransport`` (default
    ``httpx.AsyncHTTPTransport()``).

    Each pool belongs to the event loop that uses it, and is closed on that loop (an
    ``AsyncTransport`` serves one event loop). Waiting for an instance does not block the loop,
    and ``deadline`` also cancels an attempt still waiting for its response when it passes
    (that attempt's error is a ``TimeoutError``).
    """

    def __init__(
        self,
        services: Source | Mapping[str, Source],
        factory: Callable[[Instance], httpx.AsyncBaseTransport] | None = None,
        *,
        balancer: BalancerFactory = LeastPending,
        max_attempts: int = 3,
        deadline: float | None = None,
        retry_statuses: Collection[int] = (),
        failure_statuses: Collection[int] = (),
        key: KeyFunction | None = None,
        callback: RetryCallback | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            balancer=balancer,
            max_attempts=max_attempts,
            deadline=deadline,
            retry_statuses=retry_statuses,
            failure_statuses=failure_statuses,
            key=key,
            callback=callback,
            drain_timeout=drain_timeout,
        )
        make = _SharedTLS().async_pool if factory is None else factory

        def pool(instance: Instance) -> tuple[AsyncPool, Any]:
            made = AsyncPool(instance, make(instance))
            return made, made.closer

        self._routes = Routes(services, self._route_maker(pool))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to an instance of its service (see :class:`Transport`)."""
        route = self._route(request)
        policy = self._policy
        key = None if policy.key is None else policy.key(request)
        replayable = policy.replayable(request)
        deadline = policy.deadline_at()
        bounded = policy.deadline is not None
        errors: list[Exception] = []
        tried: list[AsyncPool] = []
        for attempt in range(1, policy.max_attempts + 1):
            remaining = deadline - clock().monotonic()
            if remaining <= 0:
                break
            wait = policy.wait(request, remaining)
            choice = route.balancer.achoose(key, timeout=wait, avoid=tried)
            try:
                pool: AsyncPool = await choice.__aenter__()
            except (NoEndpointsError, TimeoutError) as exc:
                if not errors:
                    raise policy.no_instance(route.name or request.url.host, exc, wait) from None
                errors.append(exc)
                break
            pool.closer.used()
            try:
                left = deadline - clock().monotonic()
                try:
                    async with clock().timeout(left if bounded else None):
                        response = await pool.transport.handle_async_request(
                            policy.attempt(request, pool.instance, left)
                        )
                except TimeoutError:  # the deadline, not an httpx timeout
                    raise TimeoutError(
                        f"the {policy.deadline:g} s deadline passed during the attempt on "
                        f"{pool.instance.address}"
                    ) from None
            except Exception as exc:
                await aexit_choice(choice, exc)
                errors.append(exc)
                tried.append(pool)
                if policy.again(
                    attempt, exc, policy.retry_error(exc, request, replayable), deadline
                ):
                    continue
                break
            except BaseException as exc:
                await aexit_choice(choice, exc)
                raise
            if policy.retry_status(response.status_code, request, replayable):
                error = policy.status_error(request, response, pool.instance)
                if policy.again(attempt, error, True, deadline):
                    await _adiscard(response)
                    await aexit_choice(choice, error)
                    errors.append(error)
                    tried.append(pool)
                    continue
            return _areleased(
                response, choice, policy.failure(request, response, pool.instance), pool
            )
        raise policy.give_up(route.name or request.url.host, errors)

    async def aclose(self) -> None:
        """Close every pool on this event loop, once its requests have ended (bounded by
        ``drain_timeout``), and stop the instancers this transport made from URLs
        (``httpx.AsyncClient.aclose()`` calls this)."""
        if self._closed:
            return
        self._closed = True
        # Off the loop: the pools are closed on this loop, which must stay free meanwhile.
        await asyncio.to_thread(self._routes.close)


def _discard(response: httpx.Response) -> None:
    """Read and close a response not returned (its connection goes back to the pool)."""
    try:
        response.read()
    except httpx.HTTPError:
        pass
    finally:
        response.close()


async def _adiscard(response: httpx.Response) -> None:
    try:
        await response.aread()
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()


def _released(
    response: httpx.Response, choice: Any, failure: Exception | None, pool: Pool
) -> httpx.Response:
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    response.stream = ReleasingStream(stream, choice, failure)
    response.extensions[INSTANCE_EXTENSION] = pool.instance
    return response


def _areleased(
    response: httpx.Response, choice: Any, failure: Exception | None, pool: AsyncPool
) -> httpx.Response:
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    response.stream = AsyncReleasingStream(stream, choice, failure)
    response.extensions[INSTANCE_EXTENSION] = pool.instance
    return response
