"""The multi-callables of :class:`sd_core.grpc.Channel`: each call a ``choose()`` of the
service's balancer, held until the call ends, on the channel of the instance picked."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]

from ._clock import clock
from ._errors import NoEndpointsError
from ._grpc_policy import CallPolicy
from ._held_choice import exit_choice
from ._routes import Route

__all__ = ["Method", "StreamStream", "StreamUnary", "UnaryStream", "UnaryUnary", "now"]


class Method:
    """One method of the service: what its multi-callable shares across calls, and the
    instance channels' own multi-callables for it (made once per channel)."""

    __slots__ = (
        "_kind",
        "_per_channel",
        "deserializer",
        "method",
        "policy",
        "registered",
        "route",
        "serializer",
    )

    def __init__(
        self,
        *,
        kind: str,
        route: Route[Any],
        policy: CallPolicy,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
        registered: bool,
    ) -> None:
        self._kind = kind
        self.route = route
        self.policy = policy
        self.method = method
        self.serializer = serializer
        self.deserializer = deserializer
        self.registered = registered
        self._per_channel: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def on(self, channel: Any) -> Any:
        """The multi-callable of this method on one instance's channel."""
        callable_ = self._per_channel.get(channel)
        if callable_ is None:
            callable_ = getattr(channel, self._kind)(
                self.method, self.serializer, self.deserializer, _registered_method=self.registered
            )
            self._per_channel[channel] = callable_
        return callable_

    @property
    def target(self) -> str:
        """The method and its service, for messages."""
        return f"{self.method} of {self.route.name}"

    def check_open(self) -> None:
        """Raise ``ValueError`` (as grpc does) once the balanced channel is closed."""
        if self.route.closed:
            raise ValueError(f"Cannot invoke RPC {self.method} on closed channel!")

    def pick(
        self, request: Any, metadata: Any, timeout: float | None, wait_for_ready: bool | None
    ) -> tuple[Any, Any]:
        """One attempt's ``choose()`` entered by hand, and the channel it yielded."""
        self.check_open()
        policy = self.policy
        key = policy.key_of(request, metadata)
        remaining = policy.deadline_at(timeout) - now()
        wait = policy.wait(timeout, wait_for_ready, remaining)
        choice = self.route.balancer.choose(key, timeout=wait)
        try:
            return choice, choice.__enter__()
        except (NoEndpointsError, TimeoutError) as exc:
            raise policy.no_instance(self.target, exc, wait) from None

    def held(
        self,
        start: Callable[[Any], Any],
        request: Any,
        metadata: Any,
        timeout: float | None,
        wait_for_ready: bool | None,
    ) -> Any:
        """Start a call that outlives this method call (a future, a stream) on a picked
        instance; the pick is released, with the call's outcome, when the call ends."""
        choice, channel = self.pick(request, metadata, timeout, wait_for_ready)
        try:
            call = start(self.on(channel))
        except BaseException as exc:
            exit_choice(choice, self.policy.failure(exc))
            raise
        policy = self.policy

        def ended(*_: object) -> None:
            exit_choice(choice, policy.failure(call))

        if not call.add_callback(ended):  # already over
            ended()
        return call

    def once(
        self,
        start: Callable[[Any], Any],
        request: Any,
        metadata: Any,
        timeout: float | None,
        wait_for_ready: bool | None,
    ) -> Any:
        """A call made once (its request is a stream that cannot be replayed)."""
        choice, channel = self.pick(request, metadata, timeout, wait_for_ready)
        try:
            result = start(self.on(channel))
        except BaseException as exc:
            exit_choice(choice, self.policy.failure(exc))
            raise
        exit_choice(choice, None)
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} over {self.route!r}>"


def now() -> float:
    """The core clock's monotonic time."""
    return clock().monotonic()


class UnaryUnary(Method, grpc.UnaryUnaryMultiCallable):  # type: ignore[misc]
    """A unary-unary method through the balancer, tried again on another instance when an
    attempt fails with a status of ``retry_codes``."""

    def __call__(  # noqa: PLR0917 (grpc's signature)
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        response, _ = self.with_call(
            request, timeout, metadata, credentials, wait_for_ready, compression
        )
        return response

    def with_call(  # noqa: PLR0917 (grpc's signature)
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> tuple[Any, Any]:
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
            choice = self.route.balancer.choose(key, timeout=wait, avoid=tried)
            try:
                channel = choice.__enter__()
            except (NoEndpointsError, TimeoutError) as exc:
                if not errors:
                    raise policy.no_instance(self.target, exc, wait) from None
                errors.append(exc)
                break
            try:
                result = self.on(channel).with_call(
                    request,
                    timeout=policy.attempt_timeout(deadline - now()),
                    metadata=metadata,
                    credentials=credentials,
                    compression=compression,
                )
            except Exception as exc:
                exit_choice(choice, policy.failure(exc))
                if not policy.retryable(exc):
                    raise
                errors.append(exc)
                tried.append(channel)
                if policy.again(attempt, exc, True, deadline):
                    continue
                break
            except BaseException as exc:
                exit_choice(choice, exc)
                raise
            exit_choice(choice, None)
            return result  # type: ignore[no-any-return]
        raise policy.give_up(self.target, errors, timeout)

    def future(  # noqa: PLR0917 (grpc's signature)
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        """One attempt, not retried: the future of the call on the instance picked."""
        return self.held(
            lambda callable_: callable_.future(
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


class UnaryStream(Method, grpc.UnaryStreamMultiCallable):  # type: ignore[misc]
    """A unary-stream method: one instance serves the whole stream (not retried); the call is
    in flight until the stream ends or is cancelled."""

    def __call__(  # noqa: PLR0917 (grpc's signature)
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self.held(
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


class StreamUnary(Method, grpc.StreamUnaryMultiCallable):  # type: ignore[misc]
    """A stream-unary method: one attempt (a request stream cannot be replayed)."""

    def __call__(  # noqa: PLR0917 (grpc's signature)
        self,
        request_iterator: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self.with_call(
            request_iterator, timeout, metadata, credentials, wait_for_ready, compression
        )[0]

    def with_call(  # noqa: PLR0917 (grpc's signature)
        self,
        request_iterator: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> tuple[Any, Any]:
        return self.once(  # type: ignore[no-any-return]
            lambda callable_: callable_.with_call(
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

    def future(  # noqa: PLR0917 (grpc's signature)
        self,
        request_iterator: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self.held(
            lambda callable_: callable_.future(
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


class StreamStream(Method, grpc.StreamStreamMultiCallable):  # type: ignore[misc]
    """A stream-stream method: one instance serves the call (not retried)."""

    def __call__(  # noqa: PLR0917 (grpc's signature)
        self,
        request_iterator: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self.held(
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
