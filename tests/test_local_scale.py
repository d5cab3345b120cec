"""The local backend at scale: only changed files are read, each process is read once per
scan, one watch (one thread, one inotify instance) serves every instancer of a directory, and
an idle watch sleeps.

The folder's bookkeeping (:class:`ServiceWatch`) is driven by hand with explicit times; the
shared watch runs for real, with waits bounded and ended by events.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest
from pytest_sd import wait_for_event

from sd_core import Event, Instance, Registration, Subscription
from sd_core.local import LocalBackend, _directory, _inotify
from sd_core.local import _instancer as local_instancer_module
from sd_core.local._directory import MIN_RESCAN, POLL_INTERVAL, Directory, directory
from sd_core.local._instancer import ServiceWatch
from sd_core.local._store import (
    LIVENESS_WINDOW,
    Entry,
    Liveness,
    entry_path,
    read_entry_file,
    refreshed_only,
    service_dir,
    write_atomic,
)

SERVICE = "web"
WAIT = 5.0
OTHER_HOST = "another-host.invalid"
T = 1_800_000_000.0
"""The wall-clock time of the entries written by hand (their watchers' clock says the same)."""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sd"


def write(
    root: Path,
    instance_id: str,
    *,
    service: str = SERVICE,
    port: int = 20001,
    ttl: float = 30.0,
    refreshed: float = T,
    hostname: str | None = None,
    pid: int | None = None,
) -> Path:
    """An entry written as a registrar of this process would (or of ``pid``, elsewhere)."""
    reg = Registration(service, "127.0.0.1", port, id=instance_id, ttl=ttl)
    mine = Entry.for_this_process(reg, refreshed, registered=T - 100)
    entry = Entry(
        reg,
        mine.pid if pid is None else pid,
        mine.hostname if hostname is None else hostname,
        mine.pid_start if pid is None else None,
        refreshed,
        mine.registered,
    )
    path = entry_path(root, service, instance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, entry.to_json())
    return path


def ids(event: Event) -> set[str]:
    return {i.id for i in event.instances}


def watch_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("sd-watch-local:")}


def inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return count


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        check=True,
        text=True,
    )
    return int(done.stdout)


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each entry's JSON was parsed in full."""
    counts: Counter[str] = Counter()
    original = Entry.from_json

    def counting(data: bytes) -> Entry:
        entry = original(data)
        counts[entry.registration.id] += 1
        return entry

    monkeypatch.setattr(Entry, "from_json", staticmethod(counting))
    return counts


# -- the folder's bookkeeping, driven by hand ----------------------------------------------
def test_a_change_reads_that_file_alone_and_a_keepalive_parses_nothing(
    root: Path, parsed: Counter[str]
) -> None:
    paths = [write(root, f"i{n}", port=20000 + n) for n in range(200)]
    watch = ServiceWatch(root, SERVICE, clock=lambda: T)
    assert watch.sweep(0.0)
    assert watch.settle()
    assert len(watch.instances()) == 200
    assert watch.reads == 200

    # A keepalive: the same entry, refreshed later. One file read, nothing parsed anew,
    # nothing shown changes.
    write(root, "i7", port=20007, refreshed=T + 10)
    watch.touch(paths[7].name, 1.0)
    assert watch.reads == 201
    assert parsed["i7"] == 1  # the first sweep only
    assert not watch.settle()

    # A real change: parsed, and shown.
    write(root, "i7", port=30007, refreshed=T + 11)
    watch.touch(paths[7].name, 2.0)
    assert (watch.reads, parsed["i7"]) == (202, 2)
    assert watch.settle()
    assert {i.port for i in watch.instances() if i.id == "i7"} == {30007}

    # A sweep reads no file that did not change, and a file gone is gone.
    paths[9].unlink()
    assert watch.sweep(3.0)
    assert watch.reads == 202
    assert watch.settle()
    assert len(watch.instances()) == 199
    assert "i9" not in {i.id for i in watch.instances()}


def test_an_entry_expires_when_due_without_a_scan(root: Path) -> None:
    path = write(root, "a", ttl=5.0, hostname=OTHER_HOST)
    watch = ServiceWatch(root, SERVICE, clock=lambda: T)
    watch.sweep(0.0)
    assert watch.settle()
    assert [i.id for i in watch.instances()] == ["a"]
    assert watch.due() == pytest.approx(5.0 + MIN_RESCAN)

    # A keepalive seen at 3 s postpones it: the earlier due time is dropped unjudged.
    write(root, "a", ttl=5.0, hostname=OTHER_HOST, refreshed=T + 3)
    watch.touch(path.name, 3.0)
    assert watch.due() == pytest.approx(8.0 + MIN_RESCAN)
    watch.run_due(7.9)
    assert not watch.settle()

    # Not rewritten for longer than its TTL, as this watcher saw: gone, and its file deleted.
    watch.run_due(8.1)
    assert watch.settle()
    assert watch.instances() == ()
    assert not path.exists()
    assert watch.reads == 2  # nothing was read to find that out
    assert watch.due() == float("inf")


def test_an_entry_stale_at_first_sight_is_hidden_and_deleted_only_after_its_ttl(
    root: Path,
) -> None:
    path = write(root, "old", ttl=5.0, hostname=OTHER_HOST, refreshed=T - 60)
    watch = ServiceWatch(root, SERVICE, clock=lambda: T)
    watch.sweep(100.0)
    watch.settle()
    assert watch.instances() == ()
    watch.run_due(104.0)
    assert path.exists()  # its clock may be the one that is off: this watcher waits
    watch.run_due(105.1)
    assert not path.exists()


def test_each_process_is_read_once_per_sweep_however_many_entries_name_it(root: Path) -> None:
    liveness = Liveness()
    web = [write(root, f"w{n}", port=20000 + n) for n in range(100)]
    for n in range(30):
        write(root, f"a{n}", service="api", port=21000 + n)
    watch = ServiceWatch(root, SERVICE, clock=lambda: T, liveness=liveness)
    api = ServiceWatch(root, "api", clock=lambda: T, liveness=liveness)

    watch.sweep(10.0)
    api.sweep(10.0)  # the same scan of the directory: the same reading
    assert liveness.reads == 1
    watch.sweep(11.0)
    assert liveness.reads == 2

    # A file event trusts a reading younger than LIVENESS_WINDOW...
    write(root, "w3", port=20003, refreshed=T + 1)
    watch.touch(web[3].name, 11.0 + LIVENESS_WINDOW / 2)
    assert liveness.reads == 2
    # ... and reads the process again after that.
    write(root, "w3", port=20003, refreshed=T + 2)
    watch.touch(web[3].name, 11.0 + LIVENESS_WINDOW * 2)
    assert liveness.reads == 3
    assert watch.settle()
    assert len(watch.instances()) == 100


def test_entries_of_a_dead_process_go_at_the_next_sweep(root: Path) -> None:
    gone = dead_pid()
    dead = [write(root, f"d{n}", port=20000 + n, pid=gone) for n in range(20)]
    write(root, "alive", port=21000)
    liveness = Liveness()
    watch = ServiceWatch(root, SERVICE, clock=lambda: T, liveness=liveness)
    watch.sweep(0.0)
    assert watch.settle()
    assert [i.id for i in watch.instances()] == ["alive"]
    assert not any(path.exists() for path in dead)
    assert liveness.reads == 2  # the dead pid and this process, once each


def test_the_sweep_period_follows_the_shortest_ttl(root: Path) -> None:
    watch = ServiceWatch(root, SERVICE, clock=lambda: T)
    watch.sweep(0.0)
    assert watch.sweep_interval() == _directory.MAX_RESCAN  # nothing to look after
    path = write(root, "short", ttl=1.0)
    watch.touch(path.name, 0.5)
    assert watch.sweep_interval() == pytest.approx(0.5)  # processes of this host: ttl / 2


# -- the keepalive shortcut is exact -------------------------------------------------------
def _entry_bytes(refreshed: float = T, **changes: object) -> tuple[bytes, Entry]:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="a", ttl=10.0)
    data = Entry.for_this_process(reg, refreshed, registered=T - 5).to_json()
    if changes:
        doc = json.loads(data) | changes
        data = json.dumps(doc, indent=1).encode()
    return data, Entry.from_json(data)


def test_a_keepalive_is_recognised_by_its_bytes() -> None:
    before, entry = _entry_bytes()
    after, expected = _entry_bytes(refreshed=T + 3.25)
    assert refreshed_only(after, before, entry) == expected


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(lambda b: b.replace(b'"port": 20001', b'"port": 20002'), id="another port"),
        pytest.param(
            lambda b: b.replace(b'"refreshed": 1800000000.0', b'"refreshed": NaN'), id="NaN"
        ),
        pytest.param(
            lambda b: b.replace(b'"refreshed": 1800000000.0', b'"refreshed": 1e400'),
            id="out of range",
        ),
        pytest.param(
            lambda b: b.replace(b'"refreshed": 1800000000.0', b'"refreshed": 1_0'),
            id="not a JSON number",
        ),
        pytest.param(
            lambda b: b.replace(b'"refreshed": 1800000000.0', b'"refreshed": "1"'),
            id="a string",
        ),
        pytest.param(lambda b: b[:-1] + b', "refreshed": 5}', id="the key twice"),
        pytest.param(lambda b: b"  " + b, id="moved"),
    ],
)
def test_anything_but_a_keepalive_is_parsed_in_full(after: object) -> None:
    before, entry = _entry_bytes()
    assert callable(after)
    assert refreshed_only(after(before), before, entry) is None


def test_an_entry_with_the_key_twice_is_never_taken_for_a_keepalive() -> None:
    before, entry = _entry_bytes(extra={"refreshed": 1})
    after = before.replace(b'"refreshed": 1800000000.0', b'"refreshed": 1800000009.0')
    assert refreshed_only(after, before, entry) is None


# -- one shared watch ----------------------------------------------------------------------
def _first(sub: Subscription) -> Event:
    return wait_for_event(sub, lambda e: e.ok, WAIT, "a first set")


def test_one_thread_and_one_inotify_instance_serve_every_instancer_of_a_directory(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    threads, fds = watch_threads(), inotify_fds()
    backend = LocalBackend()
    instancers = [backend.instancer(f"svc-{n % 6}", path=str(one)) for n in range(30)]
    instancers.append(backend.instancer("svc-0", path=str(two)))
    try:
        subs = [instancer.subscribe() for instancer in instancers]
        for sub in subs:
            _first(sub)
        assert watch_threads() - threads == {f"sd-watch-local:{one}", f"sd-watch-local:{two}"}
        if _inotify.available():
            assert inotify_fds() - fds == 2
        reg = Registration("svc-3", "127.0.0.1", 20001, id="x")
        with backend.registrar(reg, path=str(one)):
            for n, sub in enumerate(subs[:30]):
                if n % 6 == 3:
                    wait_for_event(sub, lambda e: ids(e) == {"x"}, WAIT, "the instance")
        for n, instancer in enumerate(instancers[:30]):
            if n % 6 != 3:
                assert instancer.state is not None and instancer.state.instances == ()
    finally:
        for instancer in instancers:
            instancer.stop()
    assert watch_threads() == threads
    if _inotify.available():
        assert inotify_fds() == fds


def test_instancers_come_and_go_from_many_threads(root: Path) -> None:
    write(root, "a")
    backend = LocalBackend()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def churn(n: int) -> None:
        try:
            barrier.wait(WAIT)
            for round_ in range(15):
                instancer = backend.instancer(
                    f"{SERVICE}" if round_ % 2 else f"s{n}", path=str(root)
                )
                with instancer, instancer.subscribe() as sub:
                    _first(sub)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=churn, args=(n,), name=f"test-churn-{n}") for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not [w for w in workers if w.is_alive()]
    assert errors == []
    assert watch_threads() == set()
    with backend.instancer(SERVICE, path=str(root)) as instancer, instancer.subscribe() as sub:
        wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the entry")


def test_a_keepalive_through_the_watch_reads_one_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [write(root, f"i{n}", port=20000 + n) for n in range(300)]
    reads: Counter[str] = Counter()

    def counting(path: str) -> tuple[bytes, os.stat_result]:
        reads[os.path.basename(path)] += 1
        return read_entry_file(path)

    monkeypatch.setattr(local_instancer_module, "read_entry_file", counting)
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
    ):
        wait_for_event(sub, lambda e: len(e.instances) == 300, WAIT, "every entry")
        assert sum(reads.values()) == 300
        reads.clear()
        for n in range(5):
            write(root, "i42", port=20042, refreshed=T + n + 1)
        sentinel = write(root, "sentinel", port=29999)
        # Events arrive in order: once the sentinel shows, the rewrites were taken.
        wait_for_event(sub, lambda e: "sentinel" in ids(e), WAIT, "the sentinel")
    assert set(reads) == {paths[42].name, sentinel.name}
    assert 1 <= reads[paths[42].name] <= 5


def test_an_idle_watch_sleeps(root: Path) -> None:
    for n in range(40):
        write(root, f"i{n}", service=f"svc-{n % 4}", port=20000 + n, ttl=3600.0)
    backend = LocalBackend()
    instancers = [backend.instancer(f"svc-{n % 4}", path=str(root)) for n in range(20)]
    try:
        for instancer in instancers:
            with instancer.subscribe() as sub:
                wait_for_event(sub, lambda e: len(e.instances) == 10, WAIT, "the entries")
        loop = directory(root).loop
        assert loop is not None
        before = loop.wakeups
        # Nothing happens for a second (no event could show the absence of wake-ups): the
        # watch wakes for nothing in it (sweeps come every 5 s, all folders' together).
        time.sleep(1.0)
        assert loop.wakeups - before <= 1
    finally:
        for instancer in instancers:
            instancer.stop()


# -- the sources of events, and what happens when there are none ---------------------------
SOURCES = ["watchfiles", "poll"] + (["inotify"] if _inotify.available() else [])


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_of_file_events_serves(root: Path, source: str) -> None:
    watches = Directory(root, source=source)
    folder = service_dir(root, SERVICE)
    instancer = watches.instancer(
        SERVICE, folder, lambda liveness: ServiceWatch(root, SERVICE, liveness=liveness)
    )
    with instancer, instancer.subscribe() as sub:
        wait_for_event(sub, lambda e: e.ok and not e.instances, WAIT, "the empty set")
        reg = Registration(SERVICE, "127.0.0.1", 20001, id="a")
        with LocalBackend().registrar(reg, path=str(root)):
            wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the instance")
        wait_for_event(sub, lambda e: e.ok and not e.instances, WAIT, "the instance gone")
    assert watches.thread is None
    assert watch_threads() == set()


@pytest.mark.parametrize(("value", "events"), [("1", False), ("false", True)])
def test_polling_is_forced_as_watchfiles_would(
    root: Path, monkeypatch: pytest.MonkeyPatch, value: str, events: bool
) -> None:
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", value)
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
    ):
        _first(sub)
        loop = directory(root).loop
        assert loop is not None and loop.events is events
        write(root, "a")
        wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the instance")


@pytest.mark.skipif(not _inotify.available(), reason="inotify only")
def test_at_the_limit_of_inotify_watches_a_folder_is_polled(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: object, path: str, mask: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(_inotify.Inotify, "add", refuse)
    caplog.set_level(logging.WARNING, logger="sd_core.local")
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
    ):
        wait_for_event(sub, lambda e: e.ok, WAIT, "a first set")
        started = time.monotonic()
        write(root, "a")
        wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the instance")
        assert time.monotonic() - started < POLL_INTERVAL + 1.0
    assert any("max_user_watches" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not _inotify.available(), reason="inotify only")
def test_without_an_inotify_instance_the_directory_is_polled(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Refused:
        def __init__(self) -> None:
            raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_inotify, "Inotify", Refused)
    caplog.set_level(logging.WARNING, logger="sd_core.local")
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
    ):
        wait_for_event(sub, lambda e: e.ok, WAIT, "a first set")
        loop = directory(root).loop
        assert loop is not None and not loop.events
        write(root, "a")
        wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the instance")
    assert sum("no file events" in r.getMessage() for r in caplog.records) == 1


def test_a_folder_that_cannot_be_made_is_an_error_until_it_can(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    root = blocker / "sd"  # under a file: neither it nor its service folder can be made
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
    ):
        wait_for_event(sub, lambda e: not e.ok, WAIT, "an error")
        blocker.unlink()
        write(root, "a")
        wait_for_event(sub, lambda e: ids(e) == {"a"}, WAIT, "the recovery")


class ScriptedSource:
    """A source of file events that reports what the test puts in :attr:`script`."""

    events = True

    def __init__(self) -> None:
        self.script: queue.Queue[list[tuple[object, str, int]]] = queue.Queue()

    def add(self, folder: Path) -> str:
        return "the folder"

    def remove(self, key: object) -> None:
        pass

    def wait(self, timeout: float | None) -> list[tuple[object, str, int]]:
        try:
            return self.script.get(timeout=timeout)
        except queue.Empty:
            return []

    def wake(self) -> None:
        self.script.put([])

    def close(self) -> None:
        pass


class CountingWatch(ServiceWatch):
    """A folder's bookkeeping that tells when it was swept."""

    def __init__(self, root: Path, liveness: Liveness) -> None:
        super().__init__(root, SERVICE, liveness=liveness)
        self.sweeps: queue.Queue[float] = queue.Queue()

    def sweep(self, now: float) -> bool:
        present = super().sweep(now)
        self.sweeps.put(now)
        return present


class Collected:
    def __init__(self) -> None:
        self.sets: queue.Queue[tuple[str, ...]] = queue.Queue()

    def publish(self, instances: Iterable[Instance]) -> None:
        self.sets.put(tuple(i.id for i in instances))


def test_events_lost_make_every_folder_swept(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = ScriptedSource()
    monkeypatch.setattr(_directory, "_make_source", lambda *args: source)
    loop = _directory.Loop(root, name="test")
    made: list[CountingWatch] = []

    def make(liveness: Liveness) -> CountingWatch:
        made.append(CountingWatch(root, liveness))
        return made[-1]

    sink = Collected()
    loop.attach(make, service_dir(root, SERVICE), sink)
    thread = threading.Thread(target=loop.run, name="test-loop")
    thread.start()
    try:
        assert sink.sets.get(timeout=WAIT) == ()
        [watch] = made
        first = watch.sweeps.get(timeout=WAIT)  # when the folder was made and watched
        write(root, "a")  # no event reports it: only a sweep finds it
        source.script.put([(None, "", _directory._ALL)])  # the kernel's queue overflowed
        assert sink.sets.get(timeout=WAIT) == ("a",)
        # At once, not at the next periodic sweep.
        assert watch.sweeps.get(timeout=WAIT) - first < _directory.MAX_RESCAN / 2
    finally:
        loop.stop()
        thread.join(WAIT)
        loop.close()
    assert not thread.is_alive()
