"""What the balanced gRPC channels decide without I/O, shared by the sync and the aio one: which
status is a failure of the instance, which is tried again elsewhere, and how long to wait."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

import grpc  # type: ignore[import-untyped]

from ._clock import clock
from ._errors import NoEndpointsError, RetryError
from ._timeouts import check_timeout

__all__ = ["CallPolicy", "KeyFunction", "RetryCallback", "code_of"]

RetryCallback = Callable[[int, Exception], object]
KeyFunction = Callable[[Any, Any], object]


def _codes(name: str, values: Collection[Any]) -> frozenset[Any]:
    codes = frozenset(values)
    for code in codes:
        if not isinstance(code, grpc.StatusCode):
            raise ValueError(f"{name} must hold grpc.StatusCode values, got {code!r}")
    return codes


def code_of(error: BaseException | None) -> Any:
    """The status code of a failed call (``grpc.RpcError`` with a ``code()``), else None."""
    code = getattr(error, "code", None)
    if error is None or not isinstance(error, grpc.RpcError) or not callable(code):
        return None
    return code()


class CallPolicy:
    """The retry rules of a balanced channel (see :class:`sd_core.grpc.Channel`)."""

    __slots__ = ("callback", "failure_codes", "key", "max_attempts", "retry_codes")

    def __init__(
        self,
        *,
        max_attempts: int,
        retry_codes: Collection[Any],
        failure_codes: Collection[Any],
        key: KeyFunction | None,
        callback: RetryCallback | None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if key is not None and not callable(key):
            raise ValueError(f"key must be a function of the request returning a key, got {key!r}")
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable(attempt, error), got {callback!r}")
        self.max_attempts = max_attempts
        self.retry_codes = _codes("retry_codes", retry_codes)
        # A status worth another instance is a failure of the one that gave it.
        self.failure_codes = _codes("failure_codes", failure_codes) | self.retry_codes
        self.key = key
        self.callback = callback

    def key_of(self, request: Any, metadata: Any) -> object:
        """The balancer's key for a call: ``key(request, metadata)`` (request is None for a
        request stream), or None without a key function."""
        return None if self.key is None else self.key(request, metadata)

    @staticmethod
    def deadline_at(timeout: float | None) -> float:
        """When a call with ``timeout`` (seconds, every attempt included) must be done."""
        seconds = check_timeout("timeout", timeout)
        return math.inf if seconds is None else clock().monotonic() + seconds

    @staticmethod
    def wait(timeout: float | None, wait_for_ready: bool | None, remaining: float) -> float | None:
        """How long to wait for an instance: the time left when the call has a timeout, else
        without limit for ``wait_for_ready=True``, else not at all."""
        if timeout is not None:
            return remaining
        return math.inf if wait_for_ready else None

    @staticmethod
    def attempt_timeout(remaining: float) -> float | None:
        """The timeout of one attempt: the time left (None: no deadline)."""
        return None if remaining == math.inf else remaining

    def failure(self, error: BaseException | None) -> BaseException | None:
        """What the balancer records for a call that ended with ``error``: the error when it
        is a failure of the instance (a status in ``failure_codes``, or an exception that is no
        status), None for a success (an answer: OK or any other status; a stream the caller
        closed early)."""
        if error is None or isinstance(error, GeneratorExit):
            return None
        code = code_of(error)
        return error if code is None or code in self.failure_codes else None

    def retryable(self, error: BaseException) -> bool:
        """Whether a failed attempt may be made again on another instance."""
        return code_of(error) in self.retry_codes

    def again(self, attempt: int, error: Exception, retryable: bool, deadline: float) -> bool:
        """Whether another attempt follows failed attempt number ``attempt``: the failure may
        be retried, attempts and time are left, and ``callback(attempt, error)``, told of it,
        did not return False."""
        if not retryable or attempt >= self.max_attempts or clock().monotonic() >= deadline:
            return False
        return self.callback is None or self.callback(attempt, error) is not False

    def no_instance(self, target: str, error: Exception, waited: float | None) -> NoEndpointsError:
        """The error for a call that found no instance to try at all."""
        if not waited:
            wait = "without waiting"
        elif waited == math.inf:
            wait = "while waiting"
        else:
            wait = f"within {waited:.3g} s"
        failure = NoEndpointsError(f"no instance for {target} {wait}: {error}")
        failure.__cause__ = error
        return failure

    def give_up(self, target: str, errors: list[Exception], timeout: float | None) -> RetryError:
        """The error for a call whose every attempt failed with a retried status."""
        within = "" if timeout is None else f" within its {timeout:g} s timeout"
        if not errors:
            errors.append(TimeoutError(f"no attempt could start{within}"))
        return RetryError(
            f"{target}: {len(errors)} of {self.max_attempts} attempts failed{within}", errors
        )

    def __repr__(self) -> str:
        return (
            f"<CallPolicy max_attempts={self.max_attempts} "
            f"retry_codes={sorted(code.name for code in self.retry_codes)}>"
        )
