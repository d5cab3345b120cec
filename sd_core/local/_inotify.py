"""Linux inotify through ctypes: file events with no polling thread and no periodic wake-up.

One :class:`Inotify` holds one kernel inotify instance (a file descriptor that becomes
readable when events are queued) with a watch per folder; :meth:`Inotify.read` drains what
is queued without blocking. The caller blocks in ``poll()`` on :meth:`Inotify.fileno`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from dataclasses import dataclass

__all__ = [
    "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_DELETE",
    "IN_DELETE_SELF",
    "IN_IGNORED",
    "IN_MOVED_FROM",
    "IN_MOVED_TO",
    "IN_MOVE_SELF",
    "IN_Q_OVERFLOW",
    "IN_UNMOUNT",
    "Inotify",
    "InotifyEvent",
    "available",
]

IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

_HEADER = struct.Struct("iIII")
_BUFFER = 64 * 1024


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One event: the watch it belongs to (-1 for a queue overflow), what happened (a mask
    of ``IN_*`` bits) and the name of the file in the watched folder ("" for the folder)."""

    wd: int
    mask: int
    name: str


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    """Whether this platform has inotify (Linux, with a C library that exposes it)."""
    return _LIBC is not None


def _error(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


class Inotify:
    """One inotify instance. Raises :class:`OSError` when the kernel refuses one (the
    per-user limit of instances, ``EMFILE``) or on a platform without inotify."""

    def __init__(self) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this platform")
        fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _error("inotify_init1")
        self._fd: int | None = fd

    def fileno(self) -> int:
        """The descriptor that becomes readable when events are queued."""
        if self._fd is None:
            raise ValueError("the inotify instance is closed")
        return self._fd

    def add(self, path: str, mask: int) -> int:
        """Watch the folder ``path`` for the events of ``mask``; its watch descriptor.

        Raises :class:`OSError`: ``ENOSPC`` at the per-user limit of watches, ``ENOENT``
        when the folder is gone, ``ENOTDIR`` when it is not a folder.
        """
        assert _LIBC is not None
        wd = _LIBC.inotify_add_watch(self.fileno(), os.fsencode(path), mask | IN_ONLYDIR)
        if wd < 0:
            raise _error("inotify_add_watch", path)
        return int(wd)

    def remove(self, wd: int) -> None:
        """Stop watching ``wd`` (a watch the kernel already dropped is ignored)."""
        assert _LIBC is not None
        if self._fd is not None:
            _LIBC.inotify_rm_watch(self._fd, wd)

    def read(self) -> list[InotifyEvent]:
        """Every event queued now (none when nothing is queued)."""
        events: list[InotifyEvent] = []
        while True:
            try:
                data = os.read(self.fileno(), _BUFFER)
            except BlockingIOError:
                return events
            except InterruptedError:
                continue
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                raw = data[offset : offset + length].split(b"\0", 1)[0]
                offset += length
                events.append(InotifyEvent(wd, mask, os.fsdecode(raw)))
            if len(data) < _BUFFER - 4096:
                return events  # the queue is drained: no need for a read that finds nothing

    def close(self) -> None:
        """Close the instance (its watches go with it); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
