"""What the httpx transports decide without I/O, shared by the sync and the async one: which
failures are retried, how long to wait and to try, and the request each attempt sends."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import httpx

from ._clock import clock
from ._errors import NoEndpointsError, RetryError
from ._timeouts import check_timeout

if TYPE_CHECKING:
    from ._instance import Instance

__all__ = [
    "IDEMPOTENT_METHODS",
    "INSTANCE_EXTENSION",
    "Policy",
    "RetryCallback",
    "with_origin",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""The methods RFC 9110 defines as idempotent: retried after the request may have been sent."""

INSTANCE_EXTENSION = "sd_instance"
"""The response extension naming the :class:`Instance` that answered."""

RetryCallback = Callable[[int, Exception], object]
KeyFunction = Callable[[httpx.Request], object]

# Failures before anything of the request was sent: any request may be sent again elsewhere.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures once it may have been sent: an idempotent request with a replayable body only.
_MAYBE_SENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
_TIMEOUT_NAMES = ("connect", "read", "write", "pool")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _fast_origin(url: httpx.URL, host: str, port: int) -> httpx.URL:
    """``url.copy_with(host=host, port=port)`` without parsing the URL again (twenty times as
    fast): httpx keeps a parsed URL as a named tuple, whose host and port are replaced here."""
    reference = url._uri_reference
    if _DEFAULT_PORTS.get(reference.scheme) == port:
        port = None  # type: ignore[assignment]  # httpx leaves a default port out
    routed = httpx.URL.__new__(httpx.URL)
    routed._uri_reference = reference._replace(host=host, port=port)
    return routed


def _check_fast_origin() -> bool:
    """Whether :func:`_fast_origin` gives what ``copy_with`` gives with this version of httpx
    (checked once; without it, ``copy_with`` is used)."""
    try:
        for text in ("http://web/a?b=1#c", "https://user@web:8443/"):
            url = httpx.URL(text)
            for host, port in (("127.0.0.1", 8080), ("::1", 443), ("node-1.internal", 80)):
                fast = _fast_origin(url, host, port)
                slow = url.copy_with(host=host, port=port)
                if fast != slow or fast.raw_host != slow.raw_host or fast.port != slow.port:
                    return False
    except Exception:
        return False
    return True


_FAST_ORIGIN = _check_fast_origin()


def with_origin(url: httpx.URL, instance: Instance) -> httpx.URL:
    """``url`` with the host and port of ``instance``."""
    host = instance.host
    if _FAST_ORIGIN and host.isascii() and "%" not in host:
        return _fast_origin(url, host.lower(), instance.port)
    return url.copy_with(host=host, port=instance.port)


def _statuses(name: str, values: Collection[int]) -> frozenset[int]:
    statuses = frozenset(values)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{name} must hold HTTP statuses (100-599), got {status!r}")
    return statuses


class Policy:
    """The retry and deadline rules of a transport (see :class:`sd_core.httpx.Transport`)."""

    __slots__ = (
        "callback",
        "deadline",
        "failure_statuses",
        "key",
        "max_attempts",
        "retry_statuses",
    )

    def __init__(
        self,
        *,
        max_attempts: int,
        deadline: float | None,
        retry_statuses: Collection[int],
        failure_statuses: Collection[int],
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
        self.deadline = check_timeout("deadline", deadline, positive=True)
        self.retry_statuses = _statuses("retry_statuses", retry_statuses)
        # A status worth another instance is a failure of the one that gave it.
        self.failure_statuses = (
            _statuses("failure_statuses", failure_statuses) | self.retry_statuses
        )
        self.key = key
        self.callback = callback

    # -- when -------------------------------------------------------------------------------
    def deadline_at(self) -> float:
        """The monotonic time (core clock) by which the request must be done (inf: none)."""
        return math.inf if self.deadline is None else clock().monotonic() + self.deadline

    def wait(self, request: httpx.Request, remaining: float) -> float:
        """How long to wait for an instance: the request's pool timeout (the time httpx waits
        for a connection), within the time left."""
        timeouts = request.extensions.get("timeout")
        pool = timeouts.get("pool") if isinstance(timeouts, dict) else None
        return min(math.inf if pool is None else float(pool), remaining)

    # -- whether to try again ------------------------------------------------------------------
    @staticmethod
    def replayable(request: httpx.Request) -> bool:
        """True when the body is in memory and can be sent again."""
        return isinstance(request.stream, httpx.ByteStream)

    def retry_error(self, error: Exception, request: httpx.Request, replayable: bool) -> bool:
        """Whether a failed attempt may be made again on another instance."""
        if isinstance(error, _NOT_SENT):
            return True
        return (
            replayable and request.method in IDEMPOTENT_METHODS and isinstance(error, _MAYBE_SENT)
        )

    def again(self, attempt: int, error: Exception, retryable: bool, deadline: float) -> bool:
        """Whether another attempt follows failed attempt number ``attempt``: the failure may
        be retried, attempts and time are left, and ``callback(attempt, error)``, told of it,
        did not return False."""
        if not retryable or attempt >= self.max_attempts or clock().monotonic() >= deadline:
            return False
        return self.callback is None or self.callback(attempt, error) is not False

    def retry_status(self, status: int, request: httpx.Request, replayable: bool) -> bool:
        """Whether a response with ``status`` is to be tried again on another instance."""
        return status in self.retry_statuses and replayable and request.method in IDEMPOTENT_METHODS

    def status_error(
        self, request: httpx.Request, response: httpx.Response, instance: Instance
    ) -> httpx.HTTPStatusError:
        """The error an attempt answered with a retried status counts as."""
        return httpx.HTTPStatusError(
            f"{response.status_code} {response.reason_phrase} from {instance.address} "
            f"for {request.method} {request.url}",
            request=request,
            response=response,
        )

    def failure(
        self, request: httpx.Request, response: httpx.Response, instance: Instance
    ) -> Exception | None:
        """What the balancer records for a response returned to the caller: an error for a
        failure status, None for a success."""
        if response.status_code not in self.failure_statuses:
            return None
        return self.status_error(request, response, instance)

    # -- what to send ------------------------------------------------------------------------
    @staticmethod
    def attempt(request: httpx.Request, instance: Instance, remaining: float) -> httpx.Request:
        """The request one attempt sends to ``instance``: the same method, path, headers (the
        ``Host`` header keeps the service's name) and body, with timeouts cut to ``remaining``
        seconds, and for https the service's name as the TLS server name."""
        url = with_origin(request.url, instance)
        remaining = max(remaining, 0.001)  # a timeout must be positive (the deadline is near)
        extensions = request.extensions
        if remaining < math.inf or url.scheme == "https":
            extensions = dict(extensions)
            if remaining < math.inf:
                timeouts = extensions.get("timeout")
                given = timeouts if isinstance(timeouts, dict) else {}
                extensions["timeout"] = {
                    name: remaining if given.get(name) is None else min(given[name], remaining)
                    for name in _TIMEOUT_NAMES
                }
            if url.scheme == "https":
                extensions.setdefault("sni_hostname", request.url.host)
        return httpx.Request(
            request.method,
            url,
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )

    # -- giving up -----------------------------------------------------------------------------
    def no_instance(self, service: str, error: Exception, waited: float) -> NoEndpointsError:
        """The error for a request that found no instance to try at all."""
        wait = "without waiting" if waited <= 0 else f"within {waited:.3g} s"
        if waited == math.inf:
            wait = "while waiting"
        failure = NoEndpointsError(f"no instance of service {service!r} {wait}: {error}")
        failure.__cause__ = error
        return failure

    def give_up(self, service: str, errors: list[Exception]) -> RetryError:
        """The error for a request whose every attempt failed: each attempt's error, in order."""
        within = "" if self.deadline is None else f" within the {self.deadline:g} s deadline"
        if not errors:
            errors.append(TimeoutError(f"no attempt could start{within}"))
        return RetryError(
            f"service {service!r}: {len(errors)} of {self.max_attempts} attempts failed{within}",
            errors,
        )

    def __repr__(self) -> str:
        return (
            f"<Policy max_attempts={self.max_attempts} deadline={self.deadline} "
            f"retry_statuses={sorted(self.retry_statuses)}>"
        )
