"""The local instancer: watches one service folder and publishes its live entries."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from sd_core._instance import Instance
from sd_core._secrets import logger
from sd_core._watch import WatchContext, WatchInstancer

from ._store import (
    ENTRY_SUFFIX,
    TMP_PREFIX,
    Entry,
    EntryError,
    check_regular,
    ensure_dir,
    pid_alive,
    read_entry_file,
    service_dir,
    this_hostname,
    wall_clock,
)

__all__ = ["ServiceWatch", "local_instancer"]

log = logger("sd_core.local")

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
"""A temp file seen unchanged for this long was left by a writer that crashed; it is removed."""
MAX_PROBLEM = 200
"""How much of what is wrong with a file a warning quotes."""

_Identity = tuple[int, int] | None
_Version = tuple[int, int, int]


def _version(st: os.stat_result) -> _Version:
    return st.st_ino, st.st_mtime_ns, st.st_size


def _not_from_our_watchers(record: logging.LogRecord) -> bool:
    # watchfiles logs every batch of changes at INFO; keepalives rewrite entries every ttl/3.
    return not record.threadName or not record.threadName.startswith("sd-watch-local:")


logger("watchfiles.main").addFilter(_not_from_our_watchers)


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


@dataclass(slots=True)
class _Seen:
    """What the watcher knows of one version of one file of the folder."""

    version: _Version
    entry: Entry | None
    """None: the file is not a valid entry (and was reported)."""
    seen: float
    """When this watcher first saw this version (monotonic clock)."""
    written: float
    """When the version was written, as far as this watcher can tell (monotonic clock)."""


class ServiceWatch:
    """The watch function of a local instancer (see :class:`~sd_core.plugin.WatchInstancer`).

    Scans the service folder when a file event arrives (with watchfiles; polling where
    events are unavailable) and again before the earliest entry expires and at least every
    ``min(ttl) / 2``, so that stale entries and dead processes drop out without any event.

    Staleness is judged by what this watcher observed, on its monotonic clock: an entry is
    stale once its file has not been rewritten for longer than its TTL. Only for a file it
    had not seen before does it estimate the age from the entry's ``refreshed`` time and
    its ``clock``; a clock that is off can hide an entry until its next keepalive, never
    delete one. Entries of processes gone from this host are deleted; stale entries of a
    live process on this host are hidden, never deleted (the process rewrites its file when
    it runs again); stale entries of other hosts are deleted once this watcher itself saw
    them unchanged for longer than their TTL. A file that is not a valid entry (whatever
    it holds, and whatever it is: a FIFO, a directory, a device) is skipped with one warning.
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
        self._seen: dict[str, _Seen] = {}
        self._tmp_seen: dict[str, tuple[_Version, float]] = {}

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
        now = time.monotonic()
        hostname = this_hostname()
        live: dict[str, tuple[tuple[float, str], Entry]] = {}
        recheck = MAX_RESCAN
        names: set[str] = set()
        tmp_names: set[str] = set()
        try:
            listing = list(os.scandir(self.folder))
        except FileNotFoundError:
            self._seen.clear()
            self._tmp_seen.clear()
            return [], MIN_RESCAN
        for item in listing:
            name = item.name
            if name.startswith(TMP_PREFIX):
                tmp_names.add(name)
                self._remove_stale_tmp(item, now)
                continue
            if name.startswith(".") or not name.endswith(ENTRY_SUFFIX):
                continue  # not ours: editor and other foreign files
            names.add(name)
            try:
                seen = self._observe(item, now)
                if seen is None or seen.entry is None:
                    continue
                entry = seen.entry
                ttl = entry.registration.ttl
                same_host = entry.hostname == hostname
                if same_host and not pid_alive(entry.pid, entry.pid_start):
                    self._remove(item.path, seen, f"process {entry.pid} is gone")
                    continue
                if now - seen.written > ttl:
                    # Stale. Deleted only on this watcher's own observation, and never while
                    # its process runs on this host: a process that was stopped for a while
                    # writes its file again when it runs again.
                    unchanged = now - seen.seen
                    if same_host:
                        recheck = min(recheck, ttl / 2)
                    elif unchanged > ttl:
                        self._remove(item.path, seen, f"not rewritten for {unchanged:.1f} s")
                    else:
                        recheck = min(recheck, ttl - unchanged + MIN_RESCAN)
                    continue
                recheck = min(recheck, ttl / 2, seen.written + ttl - now + MIN_RESCAN)
                # Of several registrations of one id, the latest registered is the instance.
                rank = (entry.registered or 0.0, name)
                known = live.get(entry.registration.id)
                if known is None or rank > known[0]:
                    live[entry.registration.id] = (rank, entry)
            except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
                # Whatever a file holds, it costs that file only.
                self._seen.pop(name, None)
                self._warn(name, f"{type(exc).__name__}: {exc}")
        self._warned &= names
        for gone in self._seen.keys() - names:
            del self._seen[gone]
        for gone in self._tmp_seen.keys() - tmp_names:
            del self._tmp_seen[gone]
        instances = [entry.registration.instance() for _, entry in live.values()]
        return instances, max(recheck, MIN_RESCAN)

    def _observe(self, item: os.DirEntry[str], now: float) -> _Seen | None:
        """What is known of the file ``item`` names, reading it only when it changed; None
        when it is gone."""
        # Every write replaces the file, so an unchanged (inode, mtime, size) means an
        # unchanged entry: only files written since the last scan are read and parsed.
        name = item.name
        try:
            st = item.stat()  # follows a symbolic link: what it points to is what counts
        except FileNotFoundError:
            if os.path.islink(item.path):
                self._invalid(name, (0, 0, 0), now, "a symbolic link to nothing")
            return None
        except OSError as exc:
            self._invalid(name, (0, 0, 0), now, f"unreadable: {exc}")
            return None
        before = self._seen.get(name)
        if before is not None and before.version == _version(st):
            return before
        try:
            # Nothing but a regular file is opened, and that without blocking.
            check_regular(st)
            data, st = read_entry_file(item.path)
            entry = Entry.from_json(data)
            if entry.registration.service != self.service:
                raise EntryError(f"it is an entry of service {entry.registration.service!r}")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._invalid(name, _version(st), now, f"unreadable: {exc}")
        except EntryError as exc:
            return self._invalid(name, _version(st), now, str(exc))
        self._warned.discard(name)
        written = now
        previous = None if before is None else before.entry
        if previous is None or entry.refreshed <= previous.refreshed:
            # A file this watcher had not seen written: its age is an estimate from the
            # entry's refresh time on this watcher's clock. A rewrite it saw (the writer's
            # own refresh time moved on) is new now, whatever the clocks say.
            written -= max(0.0, self._clock() - entry.refreshed)
        seen = _Seen(_version(st), entry, now, written)
        self._seen[name] = seen
        return seen

    def _invalid(self, name: str, version: _Version, now: float, problem: str) -> _Seen:
        seen = _Seen(version, None, now, now)
        self._seen[name] = seen
        self._warn(name, problem)
        return seen

    def _warn(self, name: str, problem: str) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        if len(problem) > MAX_PROBLEM:
            problem = problem[: MAX_PROBLEM - 3] + "..."
        log.warning("local: skipping %s: %s", self.folder / name, problem)

    def _remove(self, path: str, seen: _Seen, reason: str) -> None:
        try:
            # The registrar may have rewritten the file since it was read: each write is a
            # new file, so only the very version that was judged is removed.
            if _version(os.stat(path)) == seen.version:
                os.unlink(path)
        except OSError as exc:
            log.debug("local: could not remove %s: %s", path, exc)
            return
        assert seen.entry is not None
        reg = seen.entry.registration
        log.info("local: removed %s of service %s: %s", reg.id, self.service, reason)

    def _remove_stale_tmp(self, item: os.DirEntry[str], now: float) -> None:
        # Judged on this watcher's own observation, not on file times: a writer's temp file
        # lives for a moment, unless the writer crashed between creating and renaming it.
        with contextlib.suppress(OSError):
            version = _version(item.stat(follow_symlinks=False))
            known = self._tmp_seen.get(item.name)
            if known is None or known[0] != version:
                self._tmp_seen[item.name] = (version, now)
            elif now - known[1] > STALE_TMP:
                os.unlink(item.path)


def local_instancer(root: Path, service: str) -> WatchInstancer:
    """An instancer of ``service`` over the entries under ``root``."""
    return WatchInstancer(ServiceWatch(root, service), name=f"local:{service}")
