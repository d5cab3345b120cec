"""One watch of a local directory, shared by every instancer of the process.

A :class:`Directory` runs one thread (``sd-watch-local:<root>``) with one source of file
events for the whole directory: an inotify instance on Linux, holding one watch per
service folder that has instancers; ``watchfiles`` (FSEvents, ReadDirectoryChangesW) on
other platforms; polling where neither works. Each watched service has one
:class:`FolderWatch` (the local backend's ``ServiceWatch``), however many instancers it has,
and the processes its entries name are read through one
:class:`~sd_core.local._store.Liveness` for the whole directory.

The thread sleeps until a file event arrives or the next thing is due (an entry expiring, a
sweep of a folder at least every ``min(ttl) / 2``): with nothing happening it wakes once
per sweep, every :data:`MAX_RESCAN` seconds at most, all folders' sweeps together.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import platform
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# watchfiles' Rust backend (in its API reference): its watch() takes a timeout on each call,
# which the next due expiry needs; watchfiles.watch() fixes one for the whole watch.
from watchfiles._rust_notify import RustNotify

from sd_core._backoff import Backoff
from sd_core._instance import Instance
from sd_core._push import PushContext, PushInstancer
from sd_core._secrets import logger

from . import _inotify
from ._store import ENTRY_SUFFIX, Liveness, ensure_dir

__all__ = [
    "DEBOUNCE",
    "MAX_RESCAN",
    "MIN_RESCAN",
    "POLL_INTERVAL",
    "Directory",
    "FolderWatch",
    "Loop",
    "Sink",
    "directory",
]

log = logger("sd_core.local")

MAX_RESCAN = 5.0
"""The longest between two sweeps of a folder (its whole listing) with file events."""
MIN_RESCAN = 0.02
POLL_INTERVAL = 0.2
"""The sweep period when file events are unavailable."""
DEBOUNCE = 0.03
"""A file just created is looked at this long after (or when it is closed, if sooner)."""
BATCH_GAP = 0.01
"""Under a stream of file events, the average time between two batches of them."""
BATCH_BURST = 5.0
"""How many batches in a row are taken at once after a quiet spell."""
WATCHFILES_STEP_MS = 20
"""How often watchfiles (used where there is no inotify) looks for events."""
REGROW_DELAY = POLL_INTERVAL
"""How long after its folder was removed a watch creates it again."""
JOIN_TIMEOUT = 10.0
LIVENESS_KEPT = 60.0
"""Readings of processes are dropped this long after they were made."""

_INOTIFY_MASK = (
    _inotify.IN_CREATE
    | _inotify.IN_CLOSE_WRITE
    | _inotify.IN_MOVED_FROM
    | _inotify.IN_MOVED_TO
    | _inotify.IN_DELETE
    | _inotify.IN_ATTRIB
    | _inotify.IN_DELETE_SELF
    | _inotify.IN_MOVE_SELF
)
_FOLDER_GONE = (
    _inotify.IN_IGNORED | _inotify.IN_DELETE_SELF | _inotify.IN_MOVE_SELF | _inotify.IN_UNMOUNT
)

# What a source reports: (key of the folder, file name, kind).
_NOW, _CREATED, _GONE, _ALL = range(4)
"""Look at the file now; the file was created (perhaps still being written); the folder
itself is gone or moved; events were lost (look at every folder)."""
_Change = tuple[Hashable, str, int]


class FolderWatch(Protocol):
    """What the directory's thread drives for each watched service folder."""

    folder: Path

    def sweep(self, now: float) -> bool:
        """Look at the whole folder; False when it is gone."""
        ...

    def touch(self, name: str, now: float) -> None:
        """The file ``name`` changed."""
        ...

    def created(self, name: str, now: float) -> None:
        """The file ``name`` was created (it may still be being written)."""
        ...

    def run_due(self, now: float) -> None:
        """Do what is due by ``now``."""
        ...

    def due(self) -> float:
        """When something is next due (inf: nothing)."""
        ...

    def sweep_interval(self) -> float:
        """How long until the folder should be swept again, with file events."""
        ...

    def settle(self) -> bool:
        """Bring the set up to date; True when it changed."""
        ...

    def instances(self) -> tuple[Instance, ...]:
        """The instances now."""
        ...


class Sink(Protocol):
    """Where a folder's sets go: an instancer's push context, or a watch context."""

    def publish(self, instances: Iterable[Instance]) -> None: ...


# -- sources of file events ------------------------------------------------------------------
class _Source(Protocol):
    events: bool

    def add(self, folder: Path) -> Hashable | None: ...
    def remove(self, key: Hashable) -> None: ...
    def wait(self, timeout: float | None) -> list[_Change]: ...
    def wake(self) -> None: ...
    def close(self) -> None: ...


def _wanted(name: str) -> bool:
    return name.endswith(ENTRY_SUFFIX) and not name.startswith(".")


class _Polling:
    """No file events: the loop sweeps every :data:`POLL_INTERVAL`. Sleeps in ``poll()`` on
    a pipe that :meth:`wake` writes to."""

    events = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe: tuple[int, int] | None = (read, write)
        self._poller = select.poll()
        self._poller.register(read, select.POLLIN)

    def add(self, folder: Path) -> Hashable | None:
        return None

    def remove(self, key: Hashable) -> None:
        pass

    def wait(self, timeout: float | None) -> list[_Change]:
        self._block(timeout)
        return []

    def _block(self, timeout: float | None) -> set[int]:
        """Sleep until a descriptor is readable or ``timeout`` passed; those readable."""
        ms = -1 if timeout is None else math.ceil(timeout * 1000)
        try:
            ready = {fd for fd, _ in self._poller.poll(ms)}
        except InterruptedError:
            return set()
        pipe = self._pipe
        if pipe is not None and pipe[0] in ready:
            with contextlib.suppress(OSError):
                os.read(pipe[0], 4096)
        return ready

    def wake(self) -> None:
        with self._lock:  # never a write to a descriptor closed (and perhaps reused)
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe[1], b"\0")

    def close(self) -> None:
        with self._lock:
            pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for fd in pipe:
                os.close(fd)


class _InotifyEvents(_Polling):
    """inotify: one instance for the directory, one watch per folder. Raises
    :class:`OSError` when the kernel refuses an instance."""

    events = True

    def __init__(self) -> None:
        self._inotify = _inotify.Inotify()
        try:
            super().__init__()
        except BaseException:
            self._inotify.close()
            raise
        self._poller.register(self._inotify.fileno(), select.POLLIN)
        self._batched = time.monotonic()
        self._tokens = BATCH_BURST

    def add(self, folder: Path) -> Hashable | None:
        try:
            return self._inotify.add(str(folder), _INOTIFY_MASK)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
                raise
            log.warning(
                "local: no file events for %s (%s: the limit of inotify watches, "
                "fs.inotify.max_user_watches); polling every %g s",
                folder,
                exc.strerror,
                POLL_INTERVAL,
            )
            return None

    def remove(self, key: Hashable) -> None:
        assert isinstance(key, int)
        self._inotify.remove(key)

    def wait(self, timeout: float | None) -> list[_Change]:
        if self._inotify.fileno() in self._block(timeout):
            # Under a stream of changes, take them in batches, at most one every BATCH_GAP
            # on average (one wake-up then serves many files); a few changes in a row after
            # a quiet spell are taken at once (a token bucket of BATCH_BURST).
            now = time.monotonic()
            self._tokens = min(BATCH_BURST, self._tokens + (now - self._batched) / BATCH_GAP)
            self._batched = now
            if self._tokens < 1:
                time.sleep((1 - self._tokens) * BATCH_GAP)
        changes: list[_Change] = []
        for event in self._inotify.read():
            mask = event.mask
            if mask & _inotify.IN_Q_OVERFLOW:
                changes.append((None, "", _ALL))
            elif mask & _FOLDER_GONE:
                changes.append((event.wd, "", _GONE))
            elif _wanted(event.name):
                changes.append(
                    (event.wd, event.name, _CREATED if mask & _inotify.IN_CREATE else _NOW)
                )
        if changes:  # not the temporary files of writes under way: they change nothing
            now = time.monotonic()
            self._tokens += (now - self._batched) / BATCH_GAP - 1
            self._batched = now
        return changes

    def close(self) -> None:
        super().close()
        self._inotify.close()


class _WatchfilesEvents:
    """watchfiles (where there is no inotify): one recursive watch of the directory."""

    events = True

    def __init__(self, root: Path) -> None:
        self._root = str(root)
        self._notify: RustNotify | None = None
        self._flag = threading.Event()
        self._folders: set[str] = set()

    def add(self, folder: Path) -> Hashable | None:
        if self._notify is None:
            self._notify = RustNotify([self._root], False, False, 50, True, True)
        self._folders.add(str(folder))
        return str(folder)

    def remove(self, key: Hashable) -> None:
        self._folders.discard(str(key))

    def wait(self, timeout: float | None) -> list[_Change]:
        notify = self._notify
        if notify is None:
            self._flag.wait(timeout)
            self._flag.clear()
            return []
        ms = 0 if timeout is None else max(1, math.ceil(timeout * 1000))
        try:
            result = notify.watch(int(DEBOUNCE * 1000), WATCHFILES_STEP_MS, ms, self._flag)
        except Exception:
            self._close_notify()  # the next add() starts it again (after the root exists)
            raise
        finally:
            self._flag.clear()
        if isinstance(result, str):
            return []
        changes: list[_Change] = []
        for _, path in result:
            if path in self._folders and not os.path.isdir(path):
                changes.append((path, "", _GONE))
                continue
            folder, name = os.path.split(path)
            if _wanted(name):
                changes.append((folder, name, _NOW))
        return changes

    def wake(self) -> None:
        self._flag.set()

    def _close_notify(self) -> None:
        notify, self._notify = self._notify, None
        if notify is not None:
            with contextlib.suppress(Exception):
                notify.close()

    def close(self) -> None:
        self._close_notify()


def _force_polling() -> bool:
    """Polling as watchfiles would choose it: ``WATCHFILES_FORCE_POLLING`` set (to anything
    but false, disable or disabled), or else on WSL 2, whose Windows drives give no events."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING")
    if value:
        return value.lower() not in {"false", "disable", "disabled"}
    uname = platform.uname()
    return "microsoft-standard" in uname.release.lower() and uname.system.lower() == "linux"


def _make_source(root: Path, events: bool, kind: str | None) -> _Source:
    """``kind``: "inotify", "watchfiles" or "poll"; None: the best this platform has."""
    if kind is None:
        if not events or _force_polling():
            kind = "poll"
        else:
            kind = "inotify" if _inotify.available() else "watchfiles"
    if kind == "inotify":
        try:
            return _InotifyEvents()
        except OSError as exc:
            log.warning(
                "local: no file events for %s (inotify: %s); polling every %g s",
                root,
                exc.strerror or exc,
                POLL_INTERVAL,
            )
            return _Polling()
    if kind == "watchfiles":
        return _WatchfilesEvents(root)
    return _Polling()


# -- the loop --------------------------------------------------------------------------------
def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(eq=False)
class _Folder:
    watch: FolderWatch
    sinks: list[Sink] = field(default_factory=list)
    fresh: list[Sink] = field(default_factory=list)
    """Attached since the last turn: they get the current set (or error)."""
    key: Hashable | None = None
    """The source's handle of the folder (an inotify watch); None while it is polled."""
    identity: tuple[int, int] | None = None
    reset: bool = True
    """(Re)create the folder, watch it, sweep it (at ``reset_at``)."""
    reset_at: float = -math.inf
    swept: float = -math.inf
    """When the folder was last swept."""
    retry_at: float = 0.0
    error: BaseException | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, maximum=30.0))
    published: bool = False
    touched: bool = False


class Loop:
    """Watches service folders of one directory and publishes their sets to their sinks;
    :meth:`run` until :meth:`stop`, in a thread of its own or (with ``single``, one folder)
    in a watch function's thread, where a failure is raised rather than published."""

    def __init__(
        self,
        root: Path,
        *,
        events: bool = True,
        name: str,
        single: bool = False,
        source: str | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.liveness = Liveness()
        self.wakeups = 0
        """How many times the thread woke up (for tests and benchmarks)."""
        self._single = single
        self._lock = threading.Lock()
        self._folders: dict[Path, _Folder] = {}
        self._dropped: list[_Folder] = []
        self._by_key: dict[Hashable, _Folder] = {}
        self._stopping = False
        self._source = _make_source(root, events, source)

    @property
    def events(self) -> bool:
        """Whether file events are used (False: polling)."""
        return self._source.events

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def attach(self, make: Callable[[Liveness], FolderWatch], folder: Path, sink: Sink) -> None:
        """Send the sets of ``folder`` to ``sink`` (its watch made with ``make`` if it has
        none yet)."""
        with self._lock:
            known = self._folders.get(folder)
            if known is None:
                known = self._folders[folder] = _Folder(make(self.liveness))
            known.fresh.append(sink)
        self._source.wake()

    def detach(self, folder: Path, sink: Sink) -> bool:
        """Stop sending to ``sink``; True when the directory has no sink left."""
        with self._lock:
            known = self._folders.get(folder)
            if known is not None:
                for group in (known.sinks, known.fresh):
                    with contextlib.suppress(ValueError):
                        group.remove(sink)
                if not known.sinks and not known.fresh:
                    del self._folders[folder]
                    self._dropped.append(known)
            empty = not self._folders
        self._source.wake()
        return empty

    def serve(self, watch: FolderWatch, sink: Sink) -> None:
        """Watch one folder for one sink in this thread until :meth:`stop`."""
        with self._lock:
            self._folders[watch.folder] = _Folder(watch, fresh=[sink])
        self.run()

    def stop(self) -> None:
        """Make :meth:`run` return (from any thread)."""
        self._stopping = True
        self._source.wake()

    def close(self) -> None:
        """Release the source (file descriptors); after :meth:`run` returned."""
        self._source.close()

    def run(self) -> None:
        """Watch until :meth:`stop`."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                dropped, self._dropped = self._dropped, []
                turn = []
                for folder in self._folders.values():
                    fresh, folder.fresh = folder.fresh, []
                    folder.sinks.extend(fresh)
                    turn.append((folder, tuple(folder.sinks), fresh))
            for folder in dropped:
                self._unwatch(folder)
            now = time.monotonic()
            soonest = math.inf
            for folder, sinks, fresh in turn:
                if fresh or folder.touched or self._due(folder) <= now:
                    self._work(folder, sinks, fresh, now)
                soonest = min(soonest, self._next(folder))
            timeout = None if soonest == math.inf else max(0.0, soonest - time.monotonic())
            try:
                changes = self._source.wait(timeout)
            except Exception as exc:
                if self._single:
                    raise
                log.warning("local: file events for %s failed: %r", self.root, exc)
                again = time.monotonic() + POLL_INTERVAL
                with self._lock:
                    for folder in self._folders.values():
                        folder.reset, folder.reset_at = True, again
                continue
            self.wakeups += 1
            if changes:
                self._apply(changes, time.monotonic())

    def _apply(self, changes: list[_Change], now: float) -> None:
        for key, name, kind in changes:
            if kind == _ALL:
                for lost in self._by_key.values():
                    lost.swept = -math.inf  # events were lost: sweep every folder
                continue
            folder = self._by_key.get(key)
            if folder is None or folder.reset:
                continue
            folder.touched = True
            if kind == _GONE:
                self._gone(folder, now)
            elif kind == _NOW:
                folder.watch.touch(name, now)
            else:
                folder.watch.created(name, now)

    def _sweep_at(self, folder: _Folder) -> float:
        """When the folder is due to be swept (its entries' shortest TTL may have changed
        since it was last swept)."""
        interval = POLL_INTERVAL if folder.key is None else folder.watch.sweep_interval()
        return folder.swept + interval

    def _slack(self, folder: _Folder) -> float:
        # Sweeps a little early join another folder's, so that idle folders wake together.
        interval = POLL_INTERVAL if folder.key is None else folder.watch.sweep_interval()
        return min(0.5, interval / 4)

    def _due(self, folder: _Folder) -> float:
        """When ``folder`` has work (sweeps counted a little early)."""
        if folder.error is not None:
            return folder.retry_at
        if folder.reset:
            return folder.reset_at
        return min(folder.watch.due(), self._sweep_at(folder) - self._slack(folder))

    def _next(self, folder: _Folder) -> float:
        """When the thread must wake for ``folder``."""
        if folder.error is not None:
            return folder.retry_at
        if folder.reset:
            return folder.reset_at
        return min(folder.watch.due(), self._sweep_at(folder))

    def _work(
        self, folder: _Folder, sinks: tuple[Sink, ...], fresh: list[Sink], now: float
    ) -> None:
        folder.touched = False
        if folder.error is not None and now < folder.retry_at:
            for sink in fresh:
                self._fail(sink, folder.error)
            return
        try:
            if folder.reset:
                if folder.reset_at <= now:
                    self._reset(folder, now)
            elif self._sweep_at(folder) - self._slack(folder) <= now:
                self._sweep(folder, now)
            folder.watch.run_due(now)
        except Exception as exc:
            if self._single:
                raise
            folder.error = exc
            folder.reset = True
            folder.retry_at = now + folder.backoff.next()
            for sink in sinks:
                self._fail(sink, exc)
            return
        recovered = folder.error is not None
        if recovered:
            folder.error = None
            folder.backoff.reset()
        if folder.watch.settle() or recovered or not folder.published:
            targets: Iterable[Sink] = sinks
        elif fresh:
            targets = fresh
        else:
            return
        folder.published = True
        instances = folder.watch.instances()
        for sink in targets:
            sink.publish(instances)

    def _fail(self, sink: Sink, error: BaseException) -> None:
        fail = getattr(sink, "fail", None)
        if fail is not None:
            fail(error)

    def _unwatch(self, folder: _Folder) -> None:
        if folder.key is not None:
            self._by_key.pop(folder.key, None)
            with contextlib.suppress(OSError):
                self._source.remove(folder.key)
            folder.key = None

    def _reset(self, folder: _Folder, now: float) -> None:
        """(Re)create the folder, watch it, and sweep it: files changed before the watch
        was added are found by the sweep, those changed after by events."""
        path = folder.watch.folder
        ensure_dir(self.root, path)
        self._unwatch(folder)
        folder.key = self._source.add(path)
        if folder.key is not None:
            self._by_key[folder.key] = folder
        folder.identity = _identity(path)
        folder.reset = False
        if not self._sweep_now(folder, now):
            folder.reset = True
            raise FileNotFoundError(
                errno.ENOENT, "the folder vanished as it was created", str(path)
            )

    def _sweep(self, folder: _Folder, now: float) -> None:
        if not self._sweep_now(folder, now):
            self._gone(folder, now, swept=True)
        elif folder.key is not None and _identity(folder.watch.folder) != folder.identity:
            self._reset(folder, now)  # replaced: watch the folder there now

    def _gone(self, folder: _Folder, now: float, *, swept: bool = False) -> None:
        """The folder was removed: its entries are gone now; it is created again a moment
        later (not at once, which would fail whoever is removing the tree holding it), and
        whatever a registrar wrote into it meanwhile is found by the sweep then."""
        if not swept:
            folder.watch.sweep(now)
        folder.reset = True
        folder.reset_at = now + REGROW_DELAY

    def _sweep_now(self, folder: _Folder, now: float) -> bool:
        present = folder.watch.sweep(now)
        folder.swept = now
        self.liveness.forget_before(now - LIVENESS_KEPT)
        return present

    def __repr__(self) -> str:
        mode = "events" if self.events else "polling"
        return f"<Loop {self.name} ({mode}), {len(self._folders)} folders>"


# -- the directory: one loop per directory per process -----------------------------------------
class Directory:
    """The one watch of a directory that the process's instancers share: a :class:`Loop`
    in a thread, started with the first instancer and stopped (its thread joined) with the
    last."""

    def __init__(self, root: Path, *, source: str | None = None) -> None:
        self.root = root
        self._source = source
        self._lock = threading.Lock()
        self._loop: Loop | None = None
        self._thread: threading.Thread | None = None
        self._users = 0

    @property
    def loop(self) -> Loop | None:
        """The running loop (None while no instancer uses the directory)."""
        return self._loop

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread (None while no instancer uses the directory)."""
        return self._thread

    def instancer(
        self, service: str, folder: Path, make: Callable[[Liveness], FolderWatch]
    ) -> PushInstancer:
        """An instancer of ``service``, whose entries are in ``folder``: fed by the watch of
        that folder that ``make`` makes once for all the instancers of the folder."""
        return PushInstancer(lambda ctx: self._attach(make, folder, ctx), name=f"local:{service}")

    def _attach(
        self, make: Callable[[Liveness], FolderWatch], folder: Path, ctx: PushContext
    ) -> Callable[[], None]:
        with self._lock:
            loop = self._loop
            if loop is None:
                loop = Loop(self.root, name=f"local:{self.root}", source=self._source)
                thread = threading.Thread(
                    target=self._run, args=(loop,), name=f"sd-watch-local:{self.root}", daemon=True
                )
                try:
                    thread.start()
                except BaseException:
                    loop.close()
                    raise
                self._loop, self._thread = loop, thread
            try:
                loop.attach(make, folder, ctx)
            except BaseException:
                if self._users == 0:  # nobody else: the loop just started goes again
                    self._loop = self._thread = None
                    loop.stop()
                raise
            self._users += 1
        return lambda: self._detach(loop, folder, ctx)

    def _run(self, loop: Loop) -> None:
        try:
            loop.run()
        except BaseException:  # pragma: no cover - the loop publishes its failures
            log.critical("%s: the watch thread ended", loop.name, exc_info=True)
            raise
        finally:
            loop.close()

    def _detach(self, loop: Loop, folder: Path, ctx: PushContext) -> None:
        with self._lock:
            loop.detach(folder, ctx)
            if self._loop is not loop:
                return
            self._users -= 1
            if self._users > 0:
                return
            thread = self._thread
            self._loop = self._thread = None
        loop.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.error("%s: watch thread did not stop within %s s", loop.name, JOIN_TIMEOUT)

    def __repr__(self) -> str:
        return f"<Directory {str(self.root)!r}, {self._users} instancers>"


_LOCK = threading.Lock()
_DIRECTORIES: dict[Path, Directory] = {}


def directory(root: Path) -> Directory:
    """The process's one watch of ``root``."""
    with _LOCK:
        found = _DIRECTORIES.get(root)
        if found is None:
            found = _DIRECTORIES[root] = Directory(root)
        return found
