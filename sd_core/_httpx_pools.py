"""The endpoints of the httpx transports (one connection pool per instance) and the response
streams that keep a request counted in flight until its response is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

import httpx

from ._held_choice import aexit_choice, exit_choice
from ._instance import Instance
from ._loop_closer import LoopBound

__all__ = [
    "AsyncPool",
    "AsyncReleasingStream",
    "Pool",
    "ReleasingStream",
]


class Pool:
    """The endpoint of one instance for :class:`sd_core.httpx.Transport`: the instance and its
    own connection pool (an ``httpx.HTTPTransport`` unless the transport's factory says
    otherwise), closed when the instance has left and its requests have ended."""

    __slots__ = ("instance", "transport")

    def __init__(self, instance: Instance, transport: httpx.BaseTransport) -> None:
        self.instance = instance
        self.transport = transport

    def close(self) -> None:
        """Close the connection pool (the endpoint cache calls this)."""
        self.transport.close()

    def __repr__(self) -> str:
        return f"<Pool {self.instance.address} {self.transport!r}>"


class AsyncPool:
    """The endpoint of one instance for :class:`sd_core.httpx.AsyncTransport`. Its pool belongs
    to the event loop that uses it: the closer (:attr:`closer`) closes it on that loop."""

    __slots__ = ("closer", "instance", "transport")

    def __init__(self, instance: Instance, transport: httpx.AsyncBaseTransport) -> None:
        self.instance = instance
        self.transport = transport
        self.closer = LoopBound(transport.aclose, self)

    def __repr__(self) -> str:
        return f"<AsyncPool {self.instance.address} {self.transport!r}>"


class ReleasingStream(httpx.SyncByteStream):
    """A response body that ends its request's ``choose()`` block when it is closed: the request
    stays in flight (and its pool open) until then, and its outcome is the first error met
    while reading, else ``failure`` (a failure status), else a success."""

    def __init__(
        self,
        stream: httpx.SyncByteStream,
        choice: AbstractContextManager[Any],
        failure: Exception | None,
    ) -> None:
        self._stream = stream
        self._choice: AbstractContextManager[Any] | None = choice
        self._failure = failure

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as exc:
            self._failure = self._failure or exc
            raise

    def close(self) -> None:
        choice, self._choice = self._choice, None
        if choice is None:
            return
        try:
            self._stream.close()
        except Exception as exc:
            self._failure = self._failure or exc
            raise
        finally:
            exit_choice(choice, self._failure)


class AsyncReleasingStream(httpx.AsyncByteStream):
    """Async twin of :class:`ReleasingStream`."""

    def __init__(
        self,
        stream: httpx.AsyncByteStream,
        choice: AbstractAsyncContextManager[Any],
        failure: Exception | None,
    ) -> None:
        self._stream = stream
        self._choice: AbstractAsyncContextManager[Any] | None = choice
        self._failure = failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            self._failure = self._failure or exc
            raise

    async def aclose(self) -> None:
        choice, self._choice = self._choice, None
        if choice is None:
            return
        try:
            await self._stream.aclose()
        except Exception as exc:
            self._failure = self._failure or exc
            raise
        finally:
            await aexit_choice(choice, self._failure)
