"""The local instancer: what one service folder holds, kept up to date one file at a time.

:class:`ServiceWatch` knows every file of one service folder and which entries are
instances. It is told of each file that changed (:meth:`ServiceWatch.touch`), and looks at
the whole folder only now and then (:meth:`ServiceWatch.sweep`): a keepalive costs one
stat and one read of that one file, and the set is rebuilt only when it changed. Expiries
wait in a queue by due time, so nothing is looked at until something is due.

The instancers of a process are fed by one :class:`~sd_core.local._directory.Directory` per
directory (one thread, one inotify instance), which keeps one :class:`ServiceWatch` per
watched service; see :func:`local_instancer`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sd_core._instance import Instance
from sd_core._push import PushInstancer
from sd_core._secrets import logger
from sd_core._watch import WatchContext

from ._directory import DEBOUNCE, MAX_RESCAN, MIN_RESCAN, POLL_INTERVAL, Loop, directory
from ._store import (
    ENTRY_SUFFIX,
    LIVENESS_WINDOW,
    TMP_PREFIX,
    Entry,
    EntryError,
    Liveness,
    check_regular,
    read_entry_file,
    refreshed_only,
    service_dir,
    this_hostname,
    wall_clock,
)

__all__ = [
    "DEBOUNCE",
    "MAX_RESCAN",
    "MIN_RESCAN",
    "POLL_INTERVAL",
    "STALE_TMP",
    "ServiceWatch",
    "local_instancer",
]

log = logger("sd_core.local")

STALE_TMP = 60.0
"""A temp file seen unchanged for this long was left by a writer that crashed; it is removed."""
MAX_PROBLEM = 200
"""How much of what is wrong with a file a warning quotes."""

_Version = tuple[int, int, int]


def _version(st: os.stat_result) -> _Version:
    return st.st_ino, st.st_mtime_ns, st.st_size


def _is_entry_name(name: str) -> bool:
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
    queued: float = math.nan
    """When this version is due to be judged again (in the queue), or nan."""
    data: bytes = b""
    """The content the entry was parsed from (a keepalive's differs only in one number)."""


class ServiceWatch:
    """Everything one watcher knows of one service folder; also a watch function for
    :class:`~sd_core.plugin.WatchInstancer` that watches that folder alone.

    Staleness is judged by what this watcher observed, on its monotonic clock: an entry is
    stale once its file has not been rewritten for longer than its TTL. Only for a file it
    had not seen before does it estimate the age from the entry's ``refreshed`` time and
    its ``clock``; a clock that is off can hide an entry until its next keepalive, never
    delete one. Entries of processes gone from this host are deleted; stale entries of a
    live process on this host are hidden, never deleted (the process rewrites its file when
    it runs again); stale entries of other hosts are deleted once this watcher itself saw
    them unchanged for longer than their TTL. A file that is not a valid entry (whatever
    it holds, and whatever it is: a FIFO, a directory, a device) is skipped with one warning.

    Only files that changed are read: :meth:`touch` looks at one file, :meth:`sweep` at the
    listing of the whole folder (reading only files whose inode, mtime or size moved).
    Processes are read through ``liveness``, shared by the watches of a directory, once per
    pid however many entries name it.
    """

    def __init__(
        self,
        root: Path,
        service: str,
        *,
        events: bool = True,
        clock: Callable[[], float] = wall_clock,
        liveness: Liveness | None = None,
    ) -> None:
        self.root = root
        self.service = service
        self.folder = service_dir(root, service)
        self.liveness = liveness if liveness is not None else Liveness()
        self.events = events
        """Whether the watch function uses file events (it falls back to polling)."""
        self.reads = 0
        """How many times a file was read (for tests and benchmarks)."""
        self._folder = str(self.folder)
        self._clock = clock
        self._hostname = this_hostname()
        self._warned: set[str] = set()
        """Files reported as invalid; reported again only after they were valid or gone."""
        self._seen: dict[str, _Seen] = {}
        self._tmp_seen: dict[str, tuple[_Version, float]] = {}
        self._queue: list[tuple[float, int, str, _Version | None]] = []
        """(due, order, name, version): judge that version again; version None: look at the
        file again (a file just created, being written)."""
        self._order = itertools.count()
        self._members: dict[str, Entry] = {}
        """The fresh entries of live processes, by file name."""
        self._ranks: dict[str, dict[str, tuple[float, str]]] = {}
        """Of each id, the rank of each member file announcing it."""
        self._winners: dict[str, tuple[str, Instance]] = {}
        """Of each id, the file shown and its instance."""
        self._touched: set[str] = set()
        """Ids whose members changed since :meth:`settle`."""
        self._changed = True
        self._instances: tuple[Instance, ...] | None = None
        self._min_ttl = math.inf

    # -- the watch function of a WatchInstancer ------------------------------------------
    def __call__(self, ctx: WatchContext) -> None:
        loop = Loop(self.root, events=self.events, name=f"local:{self.service}", single=True)
        ctx.on_stop(loop.stop)
        try:
            loop.serve(self, ctx)
        finally:
            self.events = loop.events
            loop.close()

    # -- what a watcher tells it ---------------------------------------------------------
    def sweep(self, now: float) -> bool:
        """Look at the listing of the folder: read the files that changed, forget those
        gone, judge every entry (reading each process once, now). False when the folder is
        gone."""
        names: set[str] = set()
        tmp_names: set[str] = set()
        try:
            listing = list(os.scandir(self._folder))
        except FileNotFoundError:
            for name in list(self._seen):
                self._forget(name)
            self._tmp_seen.clear()
            return False
        self._min_ttl = math.inf
        for item in listing:
            name = item.name
            if name.startswith(TMP_PREFIX):
                tmp_names.add(name)
                self._remove_stale_tmp(item, now)
            elif _is_entry_name(name):
                names.add(name)
                self._look(name, now, now, item)
        self._warned &= names
        for gone in self._seen.keys() - names:
            self._forget(gone)
        for gone in self._tmp_seen.keys() - tmp_names:
            del self._tmp_seen[gone]
        return True

    def touch(self, name: str, now: float) -> None:
        """The file ``name`` changed (a file event): look at it alone."""
        if _is_entry_name(name):
            self._look(name, now, now - LIVENESS_WINDOW, None)

    def created(self, name: str, now: float) -> None:
        """The file ``name`` was created (a file event). A regular file is being written:
        looked at when it is closed (another event), or :data:`DEBOUNCE` seconds from now at
        the latest (a hard link is never closed); anything else (a link, a FIFO, a folder) is
        looked at now."""
        if not _is_entry_name(name):
            return
        try:
            regular = stat.S_ISREG(os.lstat(os.path.join(self._folder, name)).st_mode)
        except OSError:
            regular = False
        if regular:
            heapq.heappush(self._queue, (now + DEBOUNCE, next(self._order), name, None))
        else:
            self.touch(name, now)

    def run_due(self, now: float) -> None:
        """Judge again what is due by ``now``: entries expiring, stale files to delete,
        files to look at again."""
        queue = self._queue
        while queue and queue[0][0] <= now:
            due, _, name, version = heapq.heappop(queue)
            if version is None:
                self.touch(name, now)
                continue
            seen = self._seen.get(name)
            if seen is not None and seen.version == version and seen.queued == due:
                seen.queued = math.nan
                self._judge_guarded(name, seen, now, now - LIVENESS_WINDOW)

    def due(self) -> float:
        """When :meth:`run_due` next has something to do (monotonic; inf: nothing)."""
        queue = self._queue
        while queue:
            due, _, name, version = queue[0]
            if version is None:
                return due
            seen = self._seen.get(name)
            if seen is not None and seen.version == version and seen.queued == due:
                return due
            heapq.heappop(queue)  # superseded by a later version: drop it unjudged
        return math.inf

    def sweep_interval(self) -> float:
        """How often the whole folder is looked at with file events: at least every
        ``min(ttl) / 2`` (processes of this host are found gone by then), and every
        :data:`MAX_RESCAN` seconds."""
        return min(MAX_RESCAN, max(MIN_RESCAN, self._min_ttl / 2))

    def settle(self) -> bool:
        """Bring the set of instances up to date; True when it changed since last time."""
        changed, self._changed = self._changed, False
        for instance_id in self._touched:
            ranks = self._ranks.get(instance_id)
            if not ranks:
                changed |= self._winners.pop(instance_id, None) is not None
                continue
            # Of several registrations of one id, the latest registered is the instance.
            name = max(ranks.values())[1]
            instance = self._members[name].registration.instance()
            known = self._winners.get(instance_id)
            self._winners[instance_id] = (name, instance)
            changed |= known is None or known[1] != instance
        self._touched.clear()
        if changed:
            self._instances = None
        return changed

    def instances(self) -> tuple[Instance, ...]:
        """The instances now (as of the last :meth:`settle`), in the order of events."""
        if self._instances is None:
            # Sorted once here, so that each instancer's event finds them in order.
            self._instances = tuple(sorted(instance for _, instance in self._winners.values()))
        return self._instances

    def scan(self) -> tuple[tuple[Instance, ...], float]:
        """Sweep the folder now and judge what is due: the live instances, and the seconds
        until the folder should be looked at again."""
        now = time.monotonic()
        if not self.sweep(now):
            self.settle()
            return (), MIN_RESCAN
        self.run_due(now)
        self.settle()
        return self.instances(), max(MIN_RESCAN, min(self.due() - now, self.sweep_interval()))

    # -- one file ------------------------------------------------------------------------
    def _look(
        self, name: str, now: float, fresh_after: float, item: os.DirEntry[str] | None
    ) -> None:
        try:
            seen = self._observe(name, now, item)
            if seen is None:
                self._forget(name)
                return
            self._judge(name, seen, now, fresh_after)
        except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            # Whatever a file holds, it costs that file only.
            self._drop(name)
            self._warn(name, f"{type(exc).__name__}: {exc}")

    def _judge_guarded(self, name: str, seen: _Seen, now: float, fresh_after: float) -> None:
        try:
            self._judge(name, seen, now, fresh_after)
        except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            self._drop(name)
            self._warn(name, f"{type(exc).__name__}: {exc}")

    def _judge(self, name: str, seen: _Seen, now: float, fresh_after: float) -> None:
        entry = seen.entry
        if entry is None:
            self._member(name, None)
            return
        ttl = entry.registration.ttl
        self._min_ttl = min(self._min_ttl, ttl)
        same_host = entry.hostname == self._hostname
        if same_host and not self.liveness.alive(entry.pid, entry.pid_start, now, fresh_after):
            self._member(name, None)
            self._remove(name, seen, f"process {entry.pid} is gone")
            return
        if now - seen.written > ttl:
            # Stale. Deleted only on this watcher's own observation, and never while its
            # process runs on this host: a process that was stopped for a while writes its
            # file again when it runs again (the sweeps look at its process meanwhile).
            self._member(name, None)
            unchanged = now - seen.seen
            if same_host:
                return
            if unchanged > ttl:
                self._remove(name, seen, f"not rewritten for {unchanged:.1f} s")
            else:
                self._queue_judgement(name, seen, seen.seen + ttl + MIN_RESCAN)
            return
        self._member(name, entry)
        self._queue_judgement(name, seen, seen.written + ttl + MIN_RESCAN)

    def _queue_judgement(self, name: str, seen: _Seen, due: float) -> None:
        if seen.queued != due:
            seen.queued = due
            heapq.heappush(self._queue, (due, next(self._order), name, seen.version))

    def _member(self, name: str, entry: Entry | None) -> None:
        """Make ``entry`` the member of file ``name`` (None: the file holds no instance)."""
        old = self._members.get(name)
        if old is entry:
            return
        if old is not None:
            if (
                entry is not None
                and old.registration == entry.registration
                and old.registered == entry.registered
            ):
                self._members[name] = entry  # a keepalive: nothing shown changes
                return
            del self._members[name]
            old_id = old.registration.id
            ranks = self._ranks[old_id]
            del ranks[name]
            if not ranks:
                del self._ranks[old_id]
            self._touched.add(old_id)
        if entry is not None:
            self._members[name] = entry
            instance_id = entry.registration.id
            self._ranks.setdefault(instance_id, {})[name] = (entry.registered or 0.0, name)
            self._touched.add(instance_id)

    def _forget(self, name: str) -> None:
        """The file ``name`` is gone."""
        self._drop(name)
        self._warned.discard(name)

    def _drop(self, name: str) -> None:
        self._seen.pop(name, None)
        self._member(name, None)

    def _observe(self, name: str, now: float, item: os.DirEntry[str] | None) -> _Seen | None:
        """What is known of the file ``name``, reading it only when it changed; None when it
        is gone."""
        # Every write replaces the file, so an unchanged (inode, mtime, size) means an
        # unchanged entry: only files written since they were last read are read and parsed.
        path = os.path.join(self._folder, name)
        try:
            # Follows a symbolic link: what it points to is what counts.
            st = item.stat() if item is not None else os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                return self._invalid(name, (0, 0, 0), now, "a symbolic link to nothing")
            return None
        except OSError as exc:
            return self._invalid(name, (0, 0, 0), now, f"unreadable: {exc}")
        before = self._seen.get(name)
        if before is not None and before.version == _version(st):
            return before
        try:
            # Nothing but a regular file is opened, and that without blocking.
            check_regular(st)
            self.reads += 1
            data, st = read_entry_file(path)
            previous = None if before is None else before.entry
            entry = None
            if before is not None and previous is not None:
                entry = refreshed_only(data, before.data, previous)
            if entry is None:
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
        if previous is None or entry.refreshed <= previous.refreshed:
            # A file this watcher had not seen written: its age is an estimate from the
            # entry's refresh time on this watcher's clock. A rewrite it saw (the writer's
            # own refresh time moved on) is new now, whatever the clocks say.
            written -= max(0.0, self._clock() - entry.refreshed)
        seen = _Seen(_version(st), entry, now, written, data=data)
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

    def _remove(self, name: str, seen: _Seen, reason: str) -> None:
        path = os.path.join(self._folder, name)
        try:
            # The registrar may have rewritten the file since it was read: each write is a
            # new file, so only the very version that was judged is removed.
            if _version(os.stat(path)) != seen.version:
                return
            os.unlink(path)
        except OSError as exc:
            log.debug("local: could not remove %s: %s", path, exc)
            return
        self._forget(name)
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

    def __repr__(self) -> str:
        return f"<ServiceWatch {self.service!r} in {str(self.root)!r}>"


def local_instancer(root: Path, service: str) -> PushInstancer:
    """An instancer of ``service`` over the entries under ``root``, fed by the one watch of
    ``root`` that every instancer of the process shares."""
    return directory(root).instancer(
        service,
        service_dir(root, service),
        lambda liveness: ServiceWatch(root, service, liveness=liveness),
    )
