"""Signals in the commands: SIGINT and SIGTERM as an exception to clean up after, signals
passed on to a child process, and the child's parent-death signal."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

__all__ = [
    "FORWARDED_SIGNALS",
    "STOP_SIGNALS",
    "Forwarder",
    "Interrupted",
    "forwarding",
    "parent_death_signal",
    "stop_on_signals",
    "wait_for_signal",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

FORWARDED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""What ``sd run`` passes on to its command."""

_PR_SET_PDEATHSIG = 1

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Interrupted(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _handlers(
    handler: Callable[[int, FrameType | None], object], signals: Iterable[int] = STOP_SIGNALS
) -> Iterator[None]:
    previous: dict[int, _Handler] = {}
    try:
        for signum in signals:
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


class Forwarder:
    """A signal handler that records each signal and passes it to a target.

    Signals that arrive before :meth:`to` named the target are kept and passed on then.
    The handler never raises: the main thread goes on with what it was doing.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        """Every signal received, in order."""
        self._send: Callable[[int], None] | None = None
        self._pending: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._send is None:
            self._pending.append(signum)
        else:
            self._send(signum)

    def to(self, send: Callable[[int], None]) -> None:
        """Pass the signals received so far, and every later one, to ``send``."""
        self._send = send
        pending, self._pending = self._pending, []
        for signum in pending:
            send(signum)

    @property
    def stopping(self) -> bool:
        """Whether SIGINT or SIGTERM was received: the target was asked to stop."""
        return any(signum in STOP_SIGNALS for signum in self.received)


@contextlib.contextmanager
def forwarding(signals: Iterable[int] = FORWARDED_SIGNALS) -> Iterator[Forwarder]:
    """Within the block, ``signals`` go to the yielded :class:`Forwarder` (main thread only).

    A signal this process was started ignoring (``nohup``, ``&`` in a script) stays ignored,
    and a child started in the block inherits that.
    """
    forwarder = Forwarder()
    handled = [signum for signum in signals if signal.getsignal(signum) is not signal.SIG_IGN]
    with _handlers(forwarder, handled):
        yield forwarder


def parent_death_signal(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` after which the child gets ``signum`` when this process dies (Linux).

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so the child
    must be started from the main thread (checked here). If this process died before the
    child's ``prctl`` ran, the child notices (its parent is no longer this process) and
    exits before running the command. None where there is no such facility.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("the child must be started from the main thread")
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def in_child() -> None:
        # Between fork and exec, in the child: no imports, no locks.
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + signum)

    return in_child


def wait_for_signal() -> None:
    """Block the main thread until a signal handler raises (see :func:`stop_on_signals`)."""
    if hasattr(signal, "pause"):
        while True:
            signal.pause()
    forever = threading.Event()
    while True:
        forever.wait(1.0)
