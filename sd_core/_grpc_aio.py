"""The grpc.aio side: a per-instance channel made on the event loop that uses it (and closed
there), and the multi-callables of :class:`sd_core.grpc.AioChannel`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from ._errors import NoEndpointsError
from ._grpc_calls import Method, now
from ._held_choice import aexit_choice
from ._loop_closer import LoopBound

__all__ = ["AioStreamStream", "AioStreamUnary", "AioUnaryStream", "AioUnaryUnary", "LazyChannel"]


class LazyChannel(grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio.Channel`` to one instance, made on first use on the running event loop (a
    grpc.aio channel belongs to a loop, and the endpoint factory runs on no loop). Its
    :attr:`closer` closes it on that loop when the instance has left."""

    def __init__(self, make: Callable[[], Any], target: str) -> None:
        self._make = make
        self._channel: Any = None
        self.target = target
        self.closer = LoopBound(self._close_made, self)

    def _get(self) -> Any:
        self.closer.used()  # raises RuntimeError outside a coroutine, as grpc.aio would
        channel = self._channel
        if channel is None:
            channel = self._channel = self._make()
        return channel

    async def _close_made(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> LazyChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close the channel (if it was ever made)."""
        if self._channel is not None:
            await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> Any:
        """The channel's connectivity (IDLE until it is first used)."""
        if self._channel is None and not try_to_connect:
            return grpc.ChannelConnectivity.IDLE
        return self._get().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: Any) -> None:
        """As ``grpc.aio.Channel.wait_for_state_change``."""
        await self._get().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        """As ``grpc.aio.Channel.channel_ready``."""
        await self._get().channel_ready()

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """As ``grpc.aio.Channel.unary_unary``."""
        return self._get().unary_unary(
            method,
            request_serializer,
            response_deserializer,
            _registered_method=_registered_method,
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """As ``grpc.aio.Channel.unary_stream``."""
        return self._get().unary_stream(
            method,
            request_serializer,
            response_deserializer,
            _registered_method=_registered_method,
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """As ``grpc.aio.Channel.stream_unary``."""
        return self._get().stream_unary(
            method,
            request_serializer,
            response_deserializer,
            _registered_method=_registered_method,
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:
        """As ``grpc.aio.Channel.stream_stream``."""
        return self._get().stream_stream(
            method,
            request_serializer,
            response_deserializer,
            _registered_method=_registered_method,
        )

    def __repr__(self) -> str:
        state = "unused" if self._channel is None else "made"
        return f"<LazyChannel {self.target} {state}>"


class _AioMethod(Method):
    """What the aio multi-callables add: picking without blocking the loop."""

    async def apick(
        self, request: Any, metadata: Any, timeout: float | None, wait_for_ready: bool | None
    ) -> tuple[Any, Any]:
        """One attempt's ``achoose()`` entered by hand, and the channel it yielded."""
        self.check_open()
        policy = self.policy
        key = policy.key_of(request, metadata)
        remaining = policy.deadline_at(timeout) - now()
        wait = policy.wait(timeout, wait_for_ready, remaining)
        choice = self.route.balancer.achoose(key, timeout=wait)
        try:
            return choice, await choice.__aenter__()
        except (NoEndpointsError, TimeoutError) as exc:
            raise policy.no_instance(self.target, exc, wait) from None

    async def aonce(
        self,
        start: Callable[[Any], Any],
        request: Any,
        metadata: Any,
        timeout: float | None,
        wait_for_ready: bool | None,
    ) -> Any:
        """A call made once, awaited."""
        choice, channel = await self.apick(request, metadata, timeout, wait_for_ready)
        try:
            result = await start(self.on(channel))
        except BaseException as exc:
            await aexit_choice(choice, self.policy.failure(exc))
            raise
        await aexit_choice(choice, None)
        return result

    async def astream(
        self,
        start: Callable[[Any], Any],
        request: Any,
        metadata: Any,
        timeout: float | None,
        wait_for_ready: bool | None,
    ) -> AsyncIterator[Any]:
        """The responses of a streaming call on a picked instance, in flight until the
        stream ends, fails, or is closed (``aclose()``, or leaving ``async for`` early)."""
        choice, channel = await self.apick(request, metadata, timeout, wait_for_ready)
        call = None
        error: BaseException | None = None
        try:
            call = start(self.on(channel))
            async for message in call:
                yield message
        except BaseException as exc:
            error = exc
            raise
        finally:
            if call is not None and not call.done():
                call.cancel()
            await aexit_choice(choice, self.policy.failure(error))


class AioUnaryUnary(_AioMethod):
    """A unary-unary method through the balancer: calling it returns an awaitable of the
    response, tried again on another instance for a status of ``retry_codes``."""

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self._invoke(request, timeout, metadata, credentials, wait_for_ready, compression)

    async def _invoke(  # noqa: PLR0917
        self,
        request: Any,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
    ) -> Any:
        self.check_open()
        policy = self.policy
        key = policy.key_of(request, metadata)
        deadline = policy.deadline_at(timeout)
        errors: list[Exception] = []
        tried: list[Any] = []
        for attempt in range(1, policy.max_attempts + 1):
            remaining = deadline - now()
            if remaining <= 0:
                break
            wait = policy.wait(timeout, wait_for_ready, remaining)
            choice = self.route.balancer.achoose(key, timeout=wait, avoid=tried)
            try:
                channel = await choice.__aenter__()
            except (NoEndpointsError, TimeoutError) as exc:
                if not errors:
                    raise policy.no_instance(self.target, exc, wait) from None
                errors.append(exc)
                break
            try:
                response = await self.on(channel)(
                    request,
                    timeout=policy.attempt_timeout(deadline - now()),
                    metadata=metadata,
                    credentials=credentials,
                    compression=compression,
                )
            except Exception as exc:
                await aexit_choice(choice, policy.failure(exc))
                if not policy.retryable(exc):
                    raise
                errors.append(exc)
                tried.append(channel)
                if policy.again(attempt, exc, True, deadline):
                    continue
                break
            except BaseException as exc:
                await aexit_choice(choice, exc)
                raise
            await aexit_choice(choice, None)
            return response
        raise policy.give_up(self.target, errors, timeout)


class AioUnaryStream(_AioMethod):
    """A unary-stream method: calling it returns an async iterator of the responses, from one
    instance (not retried)."""

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> AsyncIterator[Any]:
        return self.astream(
            lambda callable_: callable_(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                compression=compression,
            ),
            request,
            metadata,
            timeout,
            wait_for_ready,
        )


class AioStreamUnary(_AioMethod):
    """A stream-unary method: calling it with a request iterator returns an awaitable of the
    response, from one attempt (a request stream cannot be replayed)."""

    def __call__(
        self,
        request_iterator: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self.aonce(
            lambda callable_: callable_(
                request_iterator,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                compression=compression,
            ),
            None,
            metadata,
            timeout,
            wait_for_ready,
        )


class AioStreamStream(_AioMethod):
    """A stream-stream method: calling it with a request iterator returns an async iterator of
    the responses, from one instance (not retried)."""

    def __call__(
        self,
        request_iterator: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> AsyncIterator[Any]:
        return self.astream(
            lambda callable_: callable_(
                request_iterator,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                compression=compression,
            ),
            None,
            metadata,
            timeout,
            wait_for_ready,
        )
