"""gRPC channels to the instances of a discovered service.

``channel_factory()`` makes one ``grpc.Channel`` per instance for an
:class:`~sd_core.Endpointer` (``aio_channel_factory()`` one ``grpc.aio.Channel``), closed once
the instance has left and its calls have ended. ``Channel(instancer)`` is a ``grpc.Channel``
to the whole service, for any generated stub: each call goes to an instance picked by a
balancer, which learns each call's latency and status, and a call that fails with
``UNAVAILABLE`` is tried again on another instance. ``AioChannel`` is its grpc.aio twin.
Needs the ``grpc`` extra: ``pip install "sd-core[grpc]"``.
"""

from __future__ import annotations

try:
    import grpc  # type: ignore[import-untyped]
    import grpc.aio  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - exercised by a test in a fresh interpreter
    raise ImportError(
        "sd_core.grpc needs grpcio, which is not installed; install it with: "
        'pip install "sd-core[grpc]"'
    ) from None

import asyncio
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ._balance import LeastPending
from ._contracts import Closer
from ._grpc_aio import AioStreamStream, AioStreamUnary, AioUnaryStream, AioUnaryUnary, LazyChannel
from ._grpc_calls import Method, StreamStream, StreamUnary, UnaryStream, UnaryUnary
from ._grpc_policy import CallPolicy, KeyFunction, RetryCallback
from ._instance import Instance
from ._routes import BalancerFactory, Route, Source

__all__ = ["AioChannel", "Channel", "aio_channel_factory", "channel_factory"]

_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)
_FAILURE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _channel_options(
    options: Iterable[tuple[str, Any]], server_name: str | None
) -> list[tuple[str, Any]]:
    merged = list(options)
    if server_name is not None:
        merged += [
            ("grpc.ssl_target_name_override", server_name),
            ("grpc.default_authority", server_name),
        ]
    return merged


def channel_factory(
    *,
    credentials: Any = None,
    options: Iterable[tuple[str, Any]] = (),
    compression: Any = None,
    server_name: str | None = None,
) -> Callable[[Instance], Any]:
    """A factory for :class:`~sd_core.Endpointer`: one ``grpc.Channel`` per instance, to its
    ``host:port``, closed by the endpoint cache once the instance has left and its calls have
    ended.

    ``credentials`` (``grpc.ssl_channel_credentials(...)``, possibly composed with call
    credentials) makes secure channels, else they are insecure. ``server_name`` is the name the
    server's certificate is checked against and the ``:authority`` of the calls (instances are
    usually addressed by IP, their certificates name the service). ``options`` and
    ``compression`` are passed to the channel as they are.
    """
    merged = _channel_options(options, server_name)

    def channel(instance: Instance) -> Any:
        if credentials is None:
            return grpc.insecure_channel(instance.address, merged, compression)
        return grpc.secure_channel(instance.address, credentials, merged, compression)

    return channel


def aio_channel_factory(
    *,
    credentials: Any = None,
    options: Iterable[tuple[str, Any]] = (),
    compression: Any = None,
    server_name: str | None = None,
) -> Callable[[Instance], tuple[Any, Closer]]:
    """The grpc.aio twin of :func:`channel_factory`: one ``grpc.aio.Channel`` per instance.

    A grpc.aio channel belongs to an event loop, and the endpoint factory runs on none: the
    channel is made on the loop that first uses it (in ``achoose()``), and closed on that loop
    once the instance has left and its calls have ended. Use it from one event loop.
    """
    merged = _channel_options(options, server_name)

    def channel(instance: Instance) -> tuple[Any, Closer]:
        target = instance.address

        def make() -> Any:
            if credentials is None:
                return grpc.aio.insecure_channel(target, merged, compression)
            return grpc.aio.secure_channel(target, credentials, merged, compression)

        lazy = LazyChannel(make, target)
        return lazy, lazy.closer

    return channel


class _Balanced:
    """What both balanced channels share: the service's route and the call policy."""

    _route: Route[Any]
    _policy: CallPolicy

    def _setup(
        self,
        source: Source,
        factory: Callable[[Instance], Any],
        *,
        balancer: BalancerFactory,
        max_attempts: int,
        retry_codes: Collection[Any],
        failure_codes: Collection[Any],
        key: KeyFunction | None,
        callback: RetryCallback | None,
        drain_timeout: float,
    ) -> None:
        self._policy = CallPolicy(
            max_attempts=max_attempts,
            retry_codes=retry_codes,
            failure_codes=failure_codes,
            key=key,
            callback=callback,
        )
        name = source if isinstance(source, str) else repr(source)
        self._route = Route(
            name,
            source,
            factory,
            balancer,
            keyed=key is not None,
            drain_timeout=drain_timeout,
        )

    def _method(
        self,
        kind: type[Method],
        channel_method: str,
        method: str,
        *,
        serializer: Any,
        deserializer: Any,
        registered: bool,
    ) -> Any:
        return kind(
            kind=channel_method,
            route=self._route,
            policy=self._policy,
            method=method,
            serializer=serializer,
            deserializer=deserializer,
            registered=registered,
        )

    def __repr__(self) -> str:
        state = " closed" if self._route.closed else ""
        return f"<{type(self).__name__} {self._route.name} {self._policy!r}{state}>"


class Channel(_Balanced, grpc.Channel):  # type: ignore[misc]
    """A ``grpc.Channel`` to every instance of a service: give it to a generated stub.

    ``instancer`` is an :class:`~sd_core.Instancer`, or a backend URL
    (``"consul://127.0.0.1:8500/greeter"``) for which the channel makes an instancer of its own
    and stops it on close. ``factory(instance)`` makes the ``grpc.Channel`` of an instance
    (default :func:`channel_factory` ``()``, insecure: pass one with TLS credentials or
    options), closed once the instance has left and its calls have ended (at most
    ``drain_timeout`` seconds later). ``balancer`` makes the balancer from the service's
    :class:`~sd_core.Endpointer` (default :class:`~sd_core.LeastPending`);
    ``key(request, metadata)`` gives it a key (``request`` is None for a request stream).

    Each call is a ``choose()`` of the balancer held until the call ends: its latency and its
    outcome reach the balancer, a failure being a status in ``failure_codes`` (default
    ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``) or ``retry_codes`` (any other status is the
    server's answer). A unary-unary call (``stub.Method(request)``, ``with_call``) that fails
    with a status in ``retry_codes`` (default ``UNAVAILABLE``) is made again on an instance
    not tried yet while there is one, up to ``max_attempts`` attempts within the call's
    ``timeout``, which covers them all; then :class:`~sd_core.RetryError` holds every
    attempt's ``grpc.RpcError``. ``callback(attempt, error)`` runs after each failed attempt
    that is to be tried again; returning ``False`` stops there. Any other error is raised as
    it is. ``future()`` and the streaming kinds are one attempt on one instance, in flight
    until the call ends.

    While the service has no instance, a call with a ``timeout`` waits for one within it, one
    with ``wait_for_ready=True`` and no timeout waits without limit, and any other raises
    :class:`~sd_core.NoEndpointsError` at once (gRPC's fail-fast default). ``close()`` closes
    every instance's channel once its calls have ended.
    """

    def __init__(
        self,
        instancer: Source,
        factory: Callable[[Instance], Any] | None = None,
        *,
        balancer: BalancerFactory = LeastPending,
        max_attempts: int = 3,
        retry_codes: Collection[Any] = _RETRY_CODES,
        failure_codes: Collection[Any] = _FAILURE_CODES,
        key: KeyFunction | None = None,
        callback: RetryCallback | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self._setup(
            instancer,
            channel_factory() if factory is None else factory,
            balancer=balancer,
            max_attempts=max_attempts,
            retry_codes=retry_codes,
            failure_codes=failure_codes,
            key=key,
            callback=callback,
            drain_timeout=drain_timeout,
        )

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a unary-unary method, retried as the class says."""
        return self._method(
            UnaryUnary,
            "unary_unary",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a unary-stream method (one instance a call)."""
        return self._method(
            UnaryStream,
            "unary_stream",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a stream-unary method (one instance a call)."""
        return self._method(
            StreamUnary,
            "stream_unary",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a stream-stream method (one instance a call)."""
        return self._method(
            StreamStream,
            "stream_stream",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def subscribe(self, callback: Callable[[Any], None], try_to_connect: bool = False) -> None:
        """Not supported: a service has no single connectivity state (its instances do)."""
        raise NotImplementedError(
            "a balanced channel has no connectivity state of its own; each instance's "
            "channel (made by the factory) has"
        )

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        """Not supported (see :meth:`subscribe`)."""
        raise NotImplementedError("a balanced channel has no connectivity state of its own")

    def close(self) -> None:
        """Close every instance's channel once its calls have ended (bounded by
        ``drain_timeout``) and stop an instancer made from a URL; later calls raise
        ``ValueError`` (idempotent)."""
        if not self._route.closed:
            self._route.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AioChannel(_Balanced, grpc.aio.Channel):  # type: ignore[misc]
    """The grpc.aio twin of :class:`Channel`, for stubs used with ``await``: the same
    arguments, with ``factory`` defaulting to :func:`aio_channel_factory` ``()``.

    Calling a unary-response method returns an awaitable of the response (a unary-unary one
    retried as :class:`Channel` says); calling a streaming-response method returns an async
    iterator of the responses, whose call stays in flight until it ends or is closed (leave
    ``async for`` early through ``contextlib.aclosing``). Client streams are given as a request
    iterator (no ``write()``). ``await close()`` closes every instance's channel on this loop,
    once its calls have ended; ``grace`` is not used (``drain_timeout`` bounds the wait).
    """

    def __init__(
        self,
        instancer: Source,
        factory: Callable[[Instance], Any] | None = None,
        *,
        balancer: BalancerFactory = LeastPending,
        max_attempts: int = 3,
        retry_codes: Collection[Any] = _RETRY_CODES,
        failure_codes: Collection[Any] = _FAILURE_CODES,
        key: KeyFunction | None = None,
        callback: RetryCallback | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self._setup(
            instancer,
            aio_channel_factory() if factory is None else factory,
            balancer=balancer,
            max_attempts=max_attempts,
            retry_codes=retry_codes,
            failure_codes=failure_codes,
            key=key,
            callback=callback,
            drain_timeout=drain_timeout,
        )

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a unary-unary method, retried as :class:`Channel` says."""
        return self._method(
            AioUnaryUnary,
            "unary_unary",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a unary-stream method (one instance a call)."""
        return self._method(
            AioUnaryStream,
            "unary_stream",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a stream-unary method (one instance a call)."""
        return self._method(
            AioStreamUnary,
            "stream_unary",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """A multi-callable for a stream-stream method (one instance a call)."""
        return self._method(
            AioStreamStream,
            "stream_stream",
            method,
            serializer=request_serializer,
            deserializer=response_deserializer,
            registered=_registered_method,
        )

    def get_state(self, try_to_connect: bool = False) -> Any:
        """Not supported: a service has no single connectivity state (its instances do)."""
        raise NotImplementedError("a balanced channel has no connectivity state of its own")

    async def wait_for_state_change(self, last_observed_state: Any) -> None:
        """Not supported (see :meth:`get_state`)."""
        raise NotImplementedError("a balanced channel has no connectivity state of its own")

    async def channel_ready(self) -> None:
        """Not supported (see :meth:`get_state`); a call waits for an instance within its
        timeout, or without limit with ``wait_for_ready=True``."""
        raise NotImplementedError("a balanced channel has no connectivity state of its own")

    async def close(self, grace: float | None = None) -> None:
        """Close every instance's channel on this loop once its calls have ended (bounded by
        ``drain_timeout``) and stop an instancer made from a URL (idempotent)."""
        if not self._route.closed:
            # Off the loop: the channels are closed on this loop, which must stay free.
            await asyncio.to_thread(self._route.close)

    async def __aenter__(self) -> AioChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
