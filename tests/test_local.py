"""The local backend's own behaviour: file format, liveness, clean-up, restore, threads."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_sd import RegisteringChild

import sd_core
from sd_core import ConfigError, Event, Instancer, Registration, RegistrationError, Subscription
from sd_core._dispatch import never_blocks
from sd_core.local import LocalBackend
from sd_core.local import _instancer as local_instancer_module
from sd_core.local._instancer import POLL_INTERVAL, ServiceWatch
from sd_core.local._store import (
    MAX_ENTRY_BYTES,
    Entry,
    entry_path,
    own_start,
    service_dir,
    write_atomic,
)
from sd_core.plugin import WatchInstancer

SERVICE = "web"
WAIT = 3.0
OTHER_HOST = "another-host.invalid"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sd"


@pytest.fixture
def sub(root: Path) -> Iterator[Subscription]:
    with LocalBackend().instancer(SERVICE, path=str(root)) as instancer:
        yield instancer.subscribe()


def ids(event: Event) -> set[str]:
    return {i.id for i in event.instances}


def wait_for(sub: Subscription, check: Callable[[Event], bool], timeout: float = WAIT) -> Event:
    deadline = time.monotonic() + timeout
    last = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            last = sub.get(remaining)
        except TimeoutError:
            break
        if check(last):
            return last
    pytest.fail(f"no matching event within {timeout} s; last: {last!r}")


def poll(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


def write_entry(
    root: Path,
    instance_id: str,
    *,
    ttl: float = 30.0,
    age: float = 0.0,
    pid: int | None = None,
    pid_start: int | None = None,
    hostname: str | None = None,
) -> Path:
    """An entry written by hand, as another process would."""
    reg = Registration(SERVICE, "127.0.0.1", 20001, id=instance_id, ttl=ttl)
    entry = Entry.for_this_process(reg, time.time() - age)
    entry = Entry(
        reg,
        entry.pid if pid is None else pid,
        entry.hostname if hostname is None else hostname,
        entry.pid_start if pid is None else pid_start,
        entry.refreshed,
    )
    path = entry_path(root, SERVICE, instance_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, entry.to_json())
    return path


class Recorder:
    """Every event an instancer publishes, in order, none skipped (it never blocks)."""

    def __init__(self, instancer: Instancer) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

        @never_blocks
        def record(event: Event) -> None:
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

        instancer.register(record)

    def wait(self, check: Callable[[Event], bool], since: int = 0, timeout: float = WAIT) -> int:
        """The index of the first event at or after ``since`` that passes ``check``."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(check(e) for e in self.events[since:]), timeout
            )
            events = list(self.events)
        if not found:
            pytest.fail(f"no matching event within {timeout} s; last: {events[-1:]!r}")
        return next(n for n in range(since, len(events)) if check(events[n]))


_sentinels = itertools.count()


def sentinel(root: Path, *recorders: Recorder) -> int:
    """Write one more entry and wait until every recorder saw it: each watcher has then
    scanned everything that happened before (events arrive in order). Returns the index of
    the first recorder's event that shows it. (Its time is far ahead, so that a watcher
    whose clock is ahead sees it at once too.)"""
    name = f"sentinel-{next(_sentinels)}"
    write_entry(root, name, age=-2 * SKEW)
    found = [recorder.wait(lambda e: name in ids(e)) for recorder in recorders]
    return found[0]


def ports(event: Event, instance_id: str) -> set[int]:
    return {i.port for i in event.instances if i.id == instance_id}


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        check=True,
        text=True,
    )
    return int(done.stdout)


# -- the file format -----------------------------------------------------------------------
def test_an_entry_records_what_discovery_and_liveness_need(root: Path) -> None:
    reg = Registration(
        SERVICE,
        "10.0.0.5",
        8080,
        id="a",
        tags=frozenset({"t"}),
        meta={"k": "v"},
        weight=3,
        zone="z",
    )
    with LocalBackend().registrar(reg, path=str(root)) as registrar:
        doc = json.loads(registrar.path.read_text())
        assert registrar.path.parent == service_dir(root, SERVICE)
    assert doc["format"] == "sd-local/1"
    assert {k: doc[k] for k in ("service", "id", "host", "port", "tags", "meta")} == {
        "service": SERVICE,
        "id": "a",
        "host": "10.0.0.5",
        "port": 8080,
        "tags": ["t"],
        "meta": {"k": "v"},
    }
    assert (doc["weight"], doc["zone"], doc["ttl"]) == (3, "z", 10.0)
    assert doc["pid"] == os.getpid()
    assert doc["hostname"]
    assert abs(doc["refreshed"] - time.time()) < 5
    assert not registrar.path.exists()


def test_the_keepalive_rewrites_the_refresh_time(root: Path) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, ttl=0.3)
    with LocalBackend().registrar(reg, path=str(root)) as registrar:
        first = json.loads(registrar.path.read_text())["refreshed"]
        poll(lambda: json.loads(registrar.path.read_text())["refreshed"] > first)
    assert not list(registrar.path.parent.iterdir())  # no temp file left behind


@pytest.mark.parametrize(
    "instance_id",
    ["a/b", "../../etc/passwd", ".", "..", ".hidden", "ünï/cødé 🚀", "x" * 300, "A", "a b%2F"],
)
def test_any_id_round_trips(root: Path, sub: Subscription, instance_id: str) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id=instance_id)
    with LocalBackend().registrar(reg, path=str(root)) as registrar:
        assert registrar.path.parent == service_dir(root, SERVICE)
        assert len(registrar.path.name.encode()) < 255
        wait_for(sub, lambda e: ids(e) == {instance_id})
    wait_for(sub, lambda e: not e.instances)


def test_ids_differing_in_case_or_encoding_get_their_own_files(
    root: Path, sub: Subscription
) -> None:
    weird = ["A", "a", "a/b", "a%2Fb", "a b"]
    with contextlib.ExitStack() as stack:
        for n, instance_id in enumerate(weird):
            reg = Registration(SERVICE, "127.0.0.1", 20001 + n, id=instance_id)
            stack.enter_context(LocalBackend().registrar(reg, path=str(root)))
        wait_for(sub, lambda e: ids(e) == set(weird))
        names = {p.name.lower() for p in service_dir(root, SERVICE).iterdir()}
        assert len(names) == len(weird)  # apart even on a case-insensitive file system
    wait_for(sub, lambda e: not e.instances)


def test_a_service_name_with_slashes_stays_inside_the_root(root: Path) -> None:
    reg = Registration("../a/b", "127.0.0.1", 20001)
    with (
        LocalBackend().instancer("../a/b", path=str(root)) as instancer,
        instancer.subscribe() as sub,
        LocalBackend().registrar(reg, path=str(root)) as registrar,
    ):
        assert registrar.path.parent.parent == root
        wait_for(sub, lambda e: ids(e) == {reg.id})


# -- what is not an instance ---------------------------------------------------------------
def test_a_corrupt_file_is_skipped_with_one_warning(
    root: Path, sub: Subscription, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_core.local")
    folder = service_dir(root, SERVICE)
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "garbage.json": b"{not json",
        "list.json": b"[1, 2]",
        "foreign-format.json": json.dumps({"format": "other", "host": "h"}).encode(),
        "bad-port.json": json.loads(write_entry(root, "p").read_bytes()) | {"port": "x"},
    }
    entry_path(root, SERVICE, "p").unlink()
    for name, content in bad.items():
        data = content if isinstance(content, bytes) else json.dumps(content).encode()
        (folder / name).write_bytes(data)
    # Registering, refreshing and withdrawing good entries makes the folder be scanned many
    # times; the bad files are still reported once each.
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="good", ttl=0.3)
    with LocalBackend().registrar(reg, path=str(root)) as registrar:
        wait_for(sub, lambda e: ids(e) == {"good"})
        poll(lambda: registrar.path.stat().st_mtime > time.time() - 0.05)
        write_entry(root, "other")
        wait_for(sub, lambda e: ids(e) == {"good", "other"})
    wait_for(sub, lambda e: ids(e) == {"other"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in bad:
        assert sum(name in message for message in warnings) == 1, warnings
    assert all((folder / name).exists() for name in bad)  # not ours to delete


def test_foreign_files_are_ignored_quietly(
    root: Path, sub: Subscription, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_core.local")
    folder = service_dir(root, SERVICE)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text("notes")
    (folder / ".editor.swp").write_bytes(b"\0\1")
    (folder / "subdir").mkdir()
    write_entry(root, "a")
    wait_for(sub, lambda e: ids(e) == {"a"})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stale_entry_of_another_host_is_hidden_then_removed(root: Path) -> None:
    with LocalBackend().instancer(SERVICE, path=str(root)) as instancer:
        recorder = Recorder(instancer)
        stale = write_entry(root, "stale", ttl=0.5, age=10, hostname=OTHER_HOST)
        write_entry(root, "fresh")
        recorder.wait(lambda e: ids(e) == {"fresh"})
        # Removed only once this watcher itself saw it unchanged for longer than its TTL.
        poll(lambda: not stale.exists())
    assert not any("stale" in ids(e) for e in recorder.events)


def test_a_stale_entry_of_a_live_process_here_is_hidden_not_deleted(root: Path) -> None:
    with LocalBackend().instancer(SERVICE, path=str(root)) as instancer:
        recorder = Recorder(instancer)
        stale = write_entry(root, "stale", ttl=5, age=10)  # this process: alive
        write_entry(root, "fresh")
        recorder.wait(lambda e: ids(e) == {"fresh"})
        sentinel(root, recorder)
    assert not any("stale" in ids(e) for e in recorder.events)
    assert stale.exists()  # it writes its entry again when it runs again


def test_an_entry_expires_without_any_file_event(root: Path, sub: Subscription) -> None:
    path = write_entry(root, "short", ttl=0.5, hostname=OTHER_HOST)
    wait_for(sub, lambda e: ids(e) == {"short"})
    seen = time.monotonic()
    wait_for(sub, lambda e: not e.instances, timeout=3.0)
    assert time.monotonic() - seen < 1.5  # well before the 5 s idle re-scan
    poll(lambda: not path.exists())


def test_an_entry_of_a_dead_process_is_removed(root: Path, sub: Subscription) -> None:
    gone = write_entry(root, "dead", pid=dead_pid())
    write_entry(root, "alive")
    wait_for(sub, lambda e: ids(e) == {"alive"})
    poll(lambda: not gone.exists())


@pytest.mark.skipif(own_start() is None, reason="needs /proc to know process start times")
def test_a_reused_pid_does_not_keep_an_entry_alive(root: Path, sub: Subscription) -> None:
    start = own_start()
    assert start is not None
    reused = write_entry(root, "reused", pid=os.getpid(), pid_start=start - 1)
    write_entry(root, "alive")
    wait_for(sub, lambda e: ids(e) == {"alive"})
    poll(lambda: not reused.exists())


def test_an_entry_from_another_host_lives_by_its_ttl(root: Path, sub: Subscription) -> None:
    write_entry(root, "remote", pid=dead_pid(), hostname="another-host.invalid")
    wait_for(sub, lambda e: ids(e) == {"remote"})


# -- restore, recovery, threads ------------------------------------------------------------
def test_an_entry_deleted_by_hand_is_restored(root: Path) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="a", ttl=0.6)
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        instancer.subscribe() as sub,
        LocalBackend().registrar(reg, path=str(root)) as registrar,
    ):
        wait_for(sub, lambda e: ids(e) == {"a"})
        registrar.path.unlink()
        poll(lambda: registrar.restores == 1)
        assert registrar.registered
        assert registrar.path.exists()
        # The instancer may or may not have seen the gap; either way it ends with "a".
        poll(lambda: instancer.state is not None and ids(instancer.state) == {"a"})


def test_the_instancer_survives_its_folder_being_removed(root: Path, sub: Subscription) -> None:
    write_entry(root, "a")
    wait_for(sub, lambda e: ids(e) == {"a"})
    shutil.rmtree(root)
    wait_for(sub, lambda e: not e.instances)
    write_entry(root, "b")
    wait_for(sub, lambda e: ids(e) == {"b"})


def test_polling_works_where_file_events_do_not(root: Path) -> None:
    watch = ServiceWatch(root, SERVICE, events=False)
    with WatchInstancer(watch, name="local-poll") as instancer, instancer.subscribe() as sub:
        wait_for(sub, lambda e: not e.instances)
        started = time.monotonic()
        write_entry(root, "a")
        wait_for(sub, lambda e: ids(e) == {"a"})
        assert time.monotonic() - started < POLL_INTERVAL + 1.0


def test_stop_and_close_leave_no_thread_behind(root: Path) -> None:
    before = set(threading.enumerate())
    backend = LocalBackend()
    instancer = backend.instancer(SERVICE, path=str(root))
    registrar = backend.registrar(Registration(SERVICE, "127.0.0.1", 20001), path=str(root))
    registrar.register()
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: len(e.instances) == 1)
    assert set(threading.enumerate()) - before
    registrar.close()
    instancer.stop()
    assert set(threading.enumerate()) - before == set()


# -- options and selection -----------------------------------------------------------------
def test_the_default_folder_is_in_the_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert LocalBackend().root(path=None) == tmp_path / "sd"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    root = LocalBackend().root(path=None)
    assert root.parent == Path(__import__("tempfile").gettempdir())
    assert root.name.startswith("sd-")


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    backend = LocalBackend()
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        backend.instancer(SERVICE, path=str(tmp_path), colour="blue")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        backend.registrar(Registration(SERVICE, "h", 1), path=str(tmp_path / "file"))


def test_selected_by_url(root: Path) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="a")
    with (
        sd_core.instancer(f"local:///{SERVICE}?path={root}") as instancer,
        instancer.subscribe() as sub,
        sd_core.registrar("local", reg, path=str(root)),
    ):
        wait_for(sub, lambda e: ids(e) == {"a"})


# -- a bad file costs that file only (whatever it is) --------------------------------------
def _entry_text(root: Path, instance_id: str) -> str:
    """The JSON of a fresh, valid entry of this live process (not left in the folder)."""
    path = write_entry(root, instance_id)
    text = path.read_text()
    path.unlink()
    return text


def _with(text: str, key: str, raw: str) -> bytes:
    """``text`` with the value of ``key`` replaced by the raw JSON ``raw``."""
    doc = json.loads(text)
    marker = "__replaced__"
    doc[key] = marker
    return json.dumps(doc, indent=1).replace(f'"{marker}"', raw).encode()


def _fifo(path: Path, root: Path) -> None:
    os.mkfifo(path)


def _symlink_to_fifo(path: Path, root: Path) -> None:
    target = root.parent / f"fifo-{path.name}"
    os.mkfifo(target)
    path.symlink_to(target)


BAD_FILES: dict[str, Callable[[Path, Path], object]] = {
    # What a user or another process can put in the folder under a name ending in .json.
    "deep nesting": lambda path, root: path.write_bytes(b"[" * 30_000 + b"]" * 30_000),
    "deep nesting in meta": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "meta", "[" * 30_000 + "]" * 30_000)
    ),
    "ttl 1e400": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "ttl", "1e400")
    ),
    "ttl 10**400": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "ttl", "1" + "0" * 400)
    ),
    "refreshed 1e400": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "refreshed", "1e400")
    ),
    "refreshed 10**400": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "refreshed", "1" + "0" * 400)
    ),
    "pid beyond a C int": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "pid", str(2**31))
    ),
    "pid of 2**70": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "pid", str(2**70))
    ),
    "an integer of 5000 digits": lambda path, root: path.write_bytes(
        _with(_entry_text(root, path.stem), "port", "9" * 5000)
    ),
    "over the size limit": lambda path, root: path.write_bytes(b" " * (MAX_ENTRY_BYTES + 1)),
    "a FIFO": _fifo,
    "a symbolic link to a FIFO": _symlink_to_fifo,
    "a directory": lambda path, root: path.mkdir(),
    "a symbolic link to /dev/zero": lambda path, root: path.symlink_to("/dev/zero"),
    "a symbolic link to nothing": lambda path, root: path.symlink_to(root / "nowhere"),
}


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, devices and symbolic links")
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_skipped_and_discovery_goes_on(
    root: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_core.local")
    folder = service_dir(root, SERVICE)
    folder.mkdir(parents=True)
    make = BAD_FILES[kind]
    write_entry(root, "good")
    make(folder / "before.json", root)  # there when the instancer starts
    before = set(threading.enumerate())
    instancer = LocalBackend().instancer(SERVICE, path=str(root))
    try:
        recorder = Recorder(instancer)
        recorder.wait(lambda e: ids(e) == {"good"})
        make(folder / "during.json", root)  # appears while it watches
        write_entry(root, "later")  # later changes still arrive
        recorder.wait(lambda e: ids(e) == {"good", "later"})
        write_entry(root, "later", ttl=20)  # a rewrite: another scan that meets both
        sentinel(root, recorder)
    finally:
        instancer.stop()
    started = set(threading.enumerate()) - before
    assert not [t.name for t in started if t.name.startswith("sd-watch-")]  # stop() joined it
    assert all(e.ok for e in recorder.events), [e for e in recorder.events if not e.ok]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("before.json", "during.json"):
        assert sum(name in message for message in warnings) == 1, warnings
        assert os.path.lexists(folder / name)  # not ours to delete


# -- an entry too large to be read is refused ----------------------------------------------
def test_an_oversized_registration_is_refused_at_register(root: Path) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="big", meta={"blob": "x" * 70_000})
    registrar = LocalBackend().registrar(reg, path=str(root))
    with pytest.raises(RegistrationError) as raised:
        registrar.register()
    message = str(raised.value)
    assert f"{MAX_ENTRY_BYTES} bytes" in message, message
    assert "meta" in message and "'blob'" in message, message
    assert not registrar.registered
    assert not registrar.path.exists()
    registrar.close()


def test_an_entry_just_within_the_limit_is_registered_and_discovered(
    root: Path, sub: Subscription
) -> None:
    reg = Registration(SERVICE, "127.0.0.1", 20001, id="large", meta={"blob": "x" * 60_000})
    with LocalBackend().registrar(reg, path=str(root)):
        event = wait_for(sub, lambda e: ids(e) == {"large"})
    assert event.instances[0].meta["blob"] == "x" * 60_000


# -- several registrants of one id ---------------------------------------------------------
def _shared(port: int, ttl: float = 30.0) -> Registration:
    return Registration(SERVICE, "127.0.0.1", port, id="shared", ttl=ttl)


def test_same_id_in_two_processes_the_latest_is_shown_and_none_vanishes(root: Path) -> None:
    options = {"path": str(root)}
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        contextlib.ExitStack() as stack,
    ):
        recorder = Recorder(instancer)
        first = stack.enter_context(RegisteringChild("local", _shared(20001), options))
        recorder.wait(lambda e: ports(e, "shared") == {20001})
        second = stack.enter_context(RegisteringChild("local", _shared(20002), options))
        start = recorder.wait(lambda e: ports(e, "shared") == {20002})
        # The later registration goes: the earlier one is shown again, with no gap.
        second.close()
        recorder.wait(lambda e: ports(e, "shared") == {20001}, since=start)
        end = sentinel(root, recorder)
        assert all("shared" in ids(e) for e in recorder.events[start:end])
        # The earlier registration goes while a later one is shown: nothing changes.
        third = stack.enter_context(RegisteringChild("local", _shared(20003), options))
        start = recorder.wait(lambda e: ports(e, "shared") == {20003})
        first.close()
        end = sentinel(root, recorder)
        assert all(ports(e, "shared") == {20003} for e in recorder.events[start:end])
        third.close()
        recorder.wait(lambda e: "shared" not in ids(e), since=end)


def test_same_id_twice_in_one_process_neither_removes_the_other(root: Path) -> None:
    backend = LocalBackend()
    with backend.instancer(SERVICE, path=str(root)) as instancer:
        recorder = Recorder(instancer)
        with backend.registrar(_shared(20001), path=str(root)) as first:
            with backend.registrar(_shared(20002), path=str(root)):
                start = recorder.wait(lambda e: ports(e, "shared") == {20002})
            recorder.wait(lambda e: ports(e, "shared") == {20001}, since=start)
            end = sentinel(root, recorder)
            assert all("shared" in ids(e) for e in recorder.events[start:end])
            assert first.restores == 0
        recorder.wait(lambda e: "shared" not in ids(e), since=end)


# -- clocks: a watcher judges staleness by what it saw, and deletes nothing on its clock -----
SKEW = 3600.0
"""How far ahead the skewed watcher's clock is: far more than any TTL here."""


@contextlib.contextmanager
def skewed_watcher(root: Path, skew: float = SKEW) -> Iterator[Recorder]:
    watch = ServiceWatch(root, SERVICE, clock=lambda: time.time() + skew)
    with WatchInstancer(watch, name="local-skewed") as instancer:
        yield Recorder(instancer)


class RemoteWriter:
    """Keeps an entry of another host alive, as that host's registrar would (every ttl / 3,
    with a correct clock), until stopped."""

    def __init__(self, root: Path, instance_id: str, ttl: float) -> None:
        self.root, self.instance_id, self.ttl = root, instance_id, ttl
        self.path = write_entry(root, instance_id, ttl=ttl, hostname=OTHER_HOST)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-remote-writer")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            write_entry(self.root, self.instance_id, ttl=self.ttl, hostname=OTHER_HOST)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)


def refreshed(path: Path) -> float:
    """The refresh time in an entry file (-inf while there is none)."""
    try:
        value: float = json.loads(path.read_text())["refreshed"]
    except FileNotFoundError:
        return -math.inf
    return value


def test_a_watcher_with_its_clock_ahead_deletes_nothing_and_nothing_flaps(root: Path) -> None:
    ttl = 1.2
    everyone = {"here", "child", "remote"}
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        LocalBackend().registrar(
            Registration(SERVICE, "127.0.0.1", 20001, id="here", ttl=ttl), path=str(root)
        ) as registrar,
        RegisteringChild(
            "local",
            Registration(SERVICE, "127.0.0.1", 20002, id="child", ttl=ttl),
            {"path": str(root)},
        ),
    ):
        remote = RemoteWriter(root, "remote", ttl)
        try:
            honest = Recorder(instancer)
            start = honest.wait(lambda e: ids(e) == everyone)
            with skewed_watcher(root) as skewed:
                # Several TTLs of keepalives, each scanned by both watchers.
                since = time.time()
                poll(lambda: refreshed(registrar.path) > since + 2 * ttl, timeout=2 * ttl + WAIT)
                end = sentinel(root, honest)
                flaps = [e for e in honest.events[start:end] if not everyone <= ids(e)]
                assert flaps == []  # no other watcher ever saw an entry go
                assert registrar.restores == 0  # its file was never deleted
                # Entries it could not date were hidden at first, not deleted; each is
                # shown from the first rewrite it saw.
                skewed.wait(lambda e: everyone <= ids(e))
            # A writer that really stopped is still found out, and its entry removed.
            remote.stop()
            honest.wait(lambda e: "remote" not in ids(e), since=end, timeout=ttl + WAIT)
            poll(lambda: not remote.path.exists())
        finally:
            remote.stop()


def test_a_leftover_temp_file_is_removed_on_observation_not_on_its_times(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_instancer_module, "STALE_TMP", 0.3)
    folder = service_dir(root, SERVICE)
    folder.mkdir(parents=True)
    leftover = folder / ".tmp-crashed.tmp"
    leftover.write_bytes(b'{"format": ')
    os.utime(leftover, (0, 0))  # its times say 1970: no clock is trusted with deleting
    watch = ServiceWatch(root, SERVICE)
    watch.scan()
    assert leftover.exists()
    poll(lambda: watch.scan() is not None and not leftover.exists())


def test_a_killed_registrant_disappears_promptly_for_every_watcher(root: Path) -> None:
    ttl = 2.0
    reg = Registration(SERVICE, "127.0.0.1", 20002, id="child", ttl=ttl)
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        skewed_watcher(root) as skewed,
        RegisteringChild("local", reg, {"path": str(root)}) as child,
    ):
        honest = Recorder(instancer)
        for recorder in (honest, skewed):
            recorder.wait(lambda e: ids(e) == {"child"})
        starts = [len(honest.events), len(skewed.events)]
        child.kill()
        killed = time.monotonic()
        for recorder, start in zip((honest, skewed), starts, strict=True):
            recorder.wait(lambda e: not e.instances, since=start, timeout=ttl + WAIT)
        # Found out by its pid at the next scan (at most ttl / 2 later), not by its TTL.
        assert time.monotonic() - killed < ttl
        poll(lambda: not any(service_dir(root, SERVICE).iterdir()))


def test_a_stalled_registrant_disappears_after_its_ttl_and_returns_when_resumed(
    root: Path,
) -> None:
    ttl = 1.0
    reg = Registration(SERVICE, "127.0.0.1", 20002, id="child", ttl=ttl)
    with (
        LocalBackend().instancer(SERVICE, path=str(root)) as instancer,
        skewed_watcher(root) as skewed,
        RegisteringChild("local", reg, {"path": str(root)}) as child,
    ):
        honest = Recorder(instancer)
        for recorder in (honest, skewed):
            recorder.wait(lambda e: ids(e) == {"child"})
        [path] = service_dir(root, SERVICE).iterdir()
        starts = [len(honest.events), len(skewed.events)]
        child.pause()
        paused = time.monotonic()
        for recorder, start in zip((honest, skewed), starts, strict=True):
            recorder.wait(lambda e: not e.instances, since=start, timeout=ttl + WAIT)
        assert time.monotonic() - paused < ttl + 1.0
        assert path.exists()  # hidden, not deleted: its process still exists
        starts = [len(honest.events), len(skewed.events)]
        child.resume()  # it writes its entry again, and is back
        for recorder, start in zip((honest, skewed), starts, strict=True):
            recorder.wait(lambda e: ids(e) == {"child"}, since=start)
