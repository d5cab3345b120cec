"""The local backend's own behaviour: file format, liveness, clean-up, restore, threads."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sd_core
from sd_core import ConfigError, Event, Registration, Subscription, WatchInstancer
from sd_core.local import LocalBackend
from sd_core.local._instancer import POLL_INTERVAL, ServiceWatch
from sd_core.local._store import Entry, entry_path, own_start, service_dir, write_atomic

SERVICE = "web"
WAIT = 3.0


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


def test_a_stale_entry_is_not_an_instance_and_is_removed(root: Path, sub: Subscription) -> None:
    stale = write_entry(root, "stale", ttl=5, age=10)
    write_entry(root, "fresh")
    wait_for(sub, lambda e: ids(e) == {"fresh"})
    poll(lambda: not stale.exists())


def test_an_entry_expires_without_any_file_event(root: Path, sub: Subscription) -> None:
    path = write_entry(root, "short", ttl=0.5)
    wait_for(sub, lambda e: ids(e) == {"short"})
    seen = time.monotonic()
    wait_for(sub, lambda e: not e.instances, timeout=3.0)
    assert time.monotonic() - seen < 1.5  # well before the 5 s idle re-scan
    assert not path.exists()


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
    with pytest.raises(ConfigError, match="accepted: path"):
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
