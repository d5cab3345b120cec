"""The local instancer: watches one service folder and publishes its live entries."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import watchfiles

from sd_core._instance import Instance
from sd_core._watch import WatchContext, WatchInstancer

from ._store import (
    ENTRY_SUFFIX,
    MAX_ENTRY_BYTES,
    TMP_PREFIX,
    Entry,
    EntryError,
    dead_reason,
    ensure_dir,
    service_dir,
    this_hostname,
    wall_clock,
)

__all__ = ["ServiceWatch", "local_instancer"]

log = logging.getLogger("sd_core.local")

STEP_MS = 5
"""How often watchfiles looks for new file events; a change is seen after about two steps."""
DEBOUNCE_MS = 30
TICK_MS = 100
"""The watch loop wakes this often without events, to re-scan when an entry is due to expire."""
MAX_RESCAN = 5.0
MIN_RESCAN = 0.02
POLL_INTERVAL = 0.2
"""The scan period when file events are unavailable."""
STALE_TMP = 60.0
"""A temp file older than this was left by a writer that crashed; it is removed."""

_Identity = tuple[int, int] | None
_Version = tuple[int, int, int]


def _version(st: os.stat_result) -> _Version:
    return st.st_ino, st.st_mtime_ns, st.st_size


def _not_from_our_watchers(record: logging.LogRecord) -> bool:
    # watchfiles logs every batch of changes at INFO; keepalives rewrite entries every ttl/3.
    return not record.threadName or not record.threadName.startswith("sd-watch-local:")


logging.getLogger("watchfiles.main").addFilter(_not_from_our_watchers)


class _NoWatcher(Exception):
    """File events cannot be had for this folder: poll instead."""


def _identity(folder: Path) -> _Identity:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_entry_change(change: watchfiles.Change, path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(ENTRY_SUFFIX) and not name.startswith(".")


class ServiceWatch:
    """The watch function of a local instancer (see :class:`~sd_core.WatchInstancer`).

    Scans the service folder when a file event arrives (with watchfiles; polling where
    events are unavailable) and again before the earliest entry expires and at least every
    ``min(ttl) / 2``, so that stale entries and dead processes drop out without any event.
    Dead entries are deleted. A file that is not a valid entry is skipped with one warning.
    """

    def __init__(
        self,
        root: Path,
        service: str,
        *,
        events: bool = True,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        self.root = root
        self.service = service
        self.folder = service_dir(root, service)
        self._events = events
        self._clock = clock
        self._warned: set[str] = set()
        """Files reported as invalid; reported again only after they were valid or gone."""
        self._parsed: dict[str, tuple[_Version, Entry]] = {}

    def __call__(self, ctx: WatchContext) -> None:
        stop = threading.Event()
        ctx.on_stop(stop.set)
        while not ctx.stopping:
            ensure_dir(self.root, self.folder)
            identity = _identity(self.folder)
            if self._events:
                try:
                    self._watch_events(ctx, stop, identity)
                    continue
                except _NoWatcher as exc:
                    log.warning(
                        "local: no file events for %s (%s); polling every %g s",
                        self.folder,
                        exc,
                        POLL_INTERVAL,
                    )
                    self._events = False
            self._poll(ctx, identity)

    def _watch_events(self, ctx: WatchContext, stop: threading.Event, identity: _Identity) -> None:
        # The first scan publishes at once; the scan after the watcher's first wake-up
        # catches what changed while it was starting.
        due = self._publish(ctx)
        changes = watchfiles.watch(
            self.folder,
            watch_filter=_is_entry_change,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
            recursive=False,
        )
        started = False
        scanned = 0
        with contextlib.closing(changes):
            while not ctx.stopping:
                try:
                    changed = next(changes)
                except StopIteration:
                    return
                except Exception as exc:
                    if ctx.stopping or _identity(self.folder) != identity:
                        return
                    if started:
                        raise
                    raise _NoWatcher(f"{type(exc).__name__}: {exc}") from exc
                first, started = not started, True
                try:
                    st = os.stat(self.folder)
                except OSError:
                    return
                if (st.st_dev, st.st_ino) != identity:
                    return  # the folder was removed or replaced: watch the new one
                # watchfiles can drop an event that lands just as it times out; the folder's
                # mtime (every write is a rename in it) catches that on the next tick.
                if changed or first or st.st_mtime_ns != scanned or time.monotonic() >= due:
                    scanned = st.st_mtime_ns
                    due = self._publish(ctx)

    def _poll(self, ctx: WatchContext, identity: _Identity) -> None:
        due = self._publish(ctx)
        while not ctx.wait(min(POLL_INTERVAL, max(0.0, due - time.monotonic()))):
            if _identity(self.folder) != identity:
                return
            due = self._publish(ctx)

    def _publish(self, ctx: WatchContext) -> float:
        instances, recheck = self.scan()
        ctx.publish(instances)
        return time.monotonic() + recheck

    def scan(self) -> tuple[list[Instance], float]:
        """The live instances, and the seconds until the folder should be scanned again."""
        now = self._clock()
        hostname = this_hostname()
        live: dict[str, Entry] = {}
        recheck = MAX_RESCAN
        names: set[str] = set()
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            return [], MIN_RESCAN
        for item in listing:
            name = item.name
            if name.startswith(TMP_PREFIX):
                self._remove_stale_tmp(item, now)
                continue
            if name.startswith(".") or not name.endswith(ENTRY_SUFFIX):
                continue  # not ours: editor and other foreign files
            names.add(name)
            read = self._read(item)
            if read is None:
                continue
            entry, inode = read
            reason = dead_reason(entry, now, hostname)
            if reason is not None:
                self._remove_dead(item.path, inode, entry, reason)
                continue
            ttl = entry.registration.ttl
            recheck = min(recheck, ttl / 2, entry.expires_at - now + MIN_RESCAN)
            known = live.get(entry.registration.id)
            if known is None or entry.refreshed > known.refreshed:
                live[entry.registration.id] = entry
        self._warned &= names
        for gone in self._parsed.keys() - names:
            del self._parsed[gone]
        return [e.registration.instance() for e in live.values()], max(recheck, MIN_RESCAN)

    def _read(self, item: os.DirEntry[str]) -> tuple[Entry, int] | None:
        # Every write replaces the file, so an unchanged (inode, mtime, size) means an
        # unchanged entry: only files written since the last scan are read and parsed.
        try:
            st = item.stat()
            cached = self._parsed.get(item.name)
            if cached is not None and cached[0] == _version(st):
                return cached[1], st.st_ino
            with open(item.path, "rb") as file:
                st = os.fstat(file.fileno())
                data = file.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(item.name, f"unreadable: {exc}")
            return None
        try:
            if len(data) > MAX_ENTRY_BYTES:
                raise EntryError(f"larger than {MAX_ENTRY_BYTES} bytes")
            entry = Entry.from_json(data)
            if entry.registration.service != self.service:
                raise EntryError(f"it is an entry of service {entry.registration.service!r}")
        except EntryError as exc:
            self._warn(item.name, str(exc))
            return None
        self._warned.discard(item.name)
        self._parsed[item.name] = (_version(st), entry)
        return entry, st.st_ino

    def _warn(self, name: str, problem: str) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        log.warning("local: skipping %s: %s", self.folder / name, problem)

    def _remove_dead(self, path: str, inode: int, entry: Entry, reason: str) -> None:
        try:
            # The registrar may have refreshed the file since it was read: each write is a
            # new inode, so only the very file that was judged dead is removed.
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except OSError as exc:
            log.debug("local: could not remove %s: %s", path, exc)
            return
        log.info("local: removed %s of service %s: %s", entry.registration.id, self.service, reason)

    def _remove_stale_tmp(self, item: os.DirEntry[str], now: float) -> None:
        with contextlib.suppress(OSError):
            if now - item.stat().st_mtime > STALE_TMP:
                os.unlink(item.path)


def local_instancer(root: Path, service: str) -> WatchInstancer:
    """An instancer of ``service`` over the entries under ``root``."""
    return WatchInstancer(ServiceWatch(root, service), name=f"local:{service}")
