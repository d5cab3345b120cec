"""Turning SIGINT and SIGTERM into an exception the commands can clean up after."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "Interrupted", "forwarding", "stop_on_signals", "wait_for_signal"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _handlers(handler: Callable[[int, FrameType | None], object]) -> Iterator[None]:
    previous: dict[int, _Handler] = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    with _handlers(_raise):
        yield


@contextlib.contextmanager
def forwarding(send: Callable[[int], None]) -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are passed to ``send``; yields the signals seen."""
    seen: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        send(signum)

    with _handlers(forward):
        yield seen


def wait_for_signal() -> None:
    """Block the main thread until a signal handler raises (see :func:`stop_on_signals`)."""
    if hasattr(signal, "pause"):
        while True:
            signal.pause()
    forever = threading.Event()
    while True:
        forever.wait(1.0)
