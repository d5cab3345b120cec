"""Closing: the context-manager forms of an object released by ``close()``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing:
    """``with`` and ``async with`` forms that call :meth:`close` / :meth:`aclose` on exit."""

    def close(self) -> None:
        """Release what the object holds (idempotent)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: a close that waits does not block the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
