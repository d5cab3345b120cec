"""The ``sd`` command, run for real in subprocesses against the built-in ``local`` backend."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import sd_core
from sd_core import Event, Registration

SD = [sys.executable, "-m", "sd_core.cli"]
WAIT = 20.0


def environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SD, *args], check=False, capture_output=True, text=True, timeout=timeout, env=environ()
    )


class Process:
    """A running ``sd`` whose output lines are read by two threads it owns."""

    def __init__(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> None:
        self.popen = subprocess.Popen(
            [*SD, *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ(),
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.stdout)),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.stderr)),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line)

    def line(self, lines: queue.Queue[str], timeout: float = WAIT) -> str:
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout} s") from None

    def wait_for_stderr(self, text: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(self.stderr, max(0.0, deadline - time.monotonic()))
            self.err_lines.append(line)
            if text in line:
                return

    def signal(self, signum: int) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(timeout=WAIT)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=WAIT)
        for thread in self._threads:
            thread.join(timeout=WAIT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def instances(path: Path, service: str = "web") -> list[str]:
    """The addresses ``local`` sees now, read through the library in this process."""
    with sd_core.instancer("local", service, path=str(path)) as instancer:
        event = instancer.subscribe().get(timeout=WAIT)
    assert event.ok, event
    return [i.address for i in event.instances]


def wait_until(predicate: object, timeout: float = WAIT) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- plugins --------------------------------------------------------------------------------


def test_plugins_text() -> None:
    result = sd("plugins")
    assert result.returncode == 0, result.stderr
    assert "local" in result.stdout
    assert "sd-core" in result.stdout
    assert "path (str)" in result.stdout
    # Option texts are printed as they are: no console markup, no ":emoji:" codes.
    assert "scheme:id:perms" in result.stdout


def test_plugins_json() -> None:
    result = sd("plugins", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    local = {b["name"]: b for b in document["backends"]}["local"]
    assert local["distribution"] == "sd-core"
    assert local["supports_discovery"]
    assert local["supports_registration"]
    assert "path" in {o["name"] for o in local["options"]}
    assert document["failed"] == []


def test_installed_sd_script() -> None:
    script = Path(sys.executable).parent / "sd"
    result = subprocess.run(
        [str(script), "plugins", "--json"], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "local" in {b["name"] for b in json.loads(result.stdout)["backends"]}


# -- resolve --------------------------------------------------------------------------------


def test_resolve(tmp_path: Path) -> None:
    registration = Registration("web", "127.0.0.1", 8080, tags={"a"}, meta={"k": "v"}, zone="z1")
    with sd_core.registrar("local", registration, path=str(tmp_path)):
        result = sd("resolve", "local:///web", "--json", "-o", f"path={tmp_path}")
        assert result.returncode == 0, result.stderr
        (instance,) = json.loads(result.stdout)["instances"]
        assert instance["address"] == "127.0.0.1:8080"
        assert instance["tags"] == ["a"]
        assert instance["meta"] == {"k": "v"}
        assert instance["zone"] == "z1"

        table = sd("resolve", "local", "web", "-o", f"path={tmp_path}")
        assert table.returncode == 0, table.stderr
        assert "127.0.0.1:8080" in table.stdout


def test_resolve_none_is_an_error(tmp_path: Path) -> None:
    result = sd("resolve", "local", "web", "-o", f"path={tmp_path}", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.strip() == "sd: no instances of web"


# -- watch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_json_follows_changes_and_ends_cleanly(
    tmp_path: Path, processes: list[Process], signum: int
) -> None:
    watch = Process("watch", "local", "web", "--json", "-o", f"path={tmp_path}")
    processes.append(watch)
    assert json.loads(watch.line(watch.stdout)) == {"instances": []}
    registration = Registration("web", "127.0.0.1", 8081)
    with sd_core.registrar("local", registration, path=str(tmp_path)):
        event = json.loads(watch.line(watch.stdout))
        assert [i["address"] for i in event["instances"]] == ["127.0.0.1:8081"]
    assert json.loads(watch.line(watch.stdout)) == {"instances": []}
    assert watch.signal(signum) == 0


# -- register -------------------------------------------------------------------------------


def test_register_until_sigterm(tmp_path: Path, processes: list[Process]) -> None:
    register = Process(
        "register", "local", "--service", "web", "--port", "8082", "--tag", "blue",
        "--meta", "version=2", "--weight", "5", "--zone", "z", "-o", f"path={tmp_path}",
    )  # fmt: skip
    processes.append(register)
    line = register.line(register.stdout)
    assert line.startswith("registered web 127.0.0.1:8082")
    with sd_core.instancer("local", "web", path=str(tmp_path)) as instancer:
        event: Event = instancer.subscribe().get(timeout=WAIT)
    (instance,) = event.instances
    assert (instance.tags, dict(instance.meta), instance.weight, instance.zone) == (
        {"blue"},
        {"version": "2"},
        5,
        "z",
    )
    assert register.signal(signal.SIGTERM) == 0
    assert instances(tmp_path) == []


def test_register_until_sigint(tmp_path: Path, processes: list[Process]) -> None:
    register = Process("register", "local:///web", "--port", "8083", "-o", f"path={tmp_path}")
    processes.append(register)
    assert register.line(register.stdout).startswith("registered web 127.0.0.1:8083")
    assert register.signal(signal.SIGINT) == 0
    assert instances(tmp_path) == []


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["resolve", "nope://127.0.0.1:1/web"],
            "sd: error: backend 'nope' is not available (plugin may not be installed);",
        ),
        (["watch", "local", "web", "-o", "colour=red"], "sd: error: local: unknown option"),
        (["resolve", "local"], "sd: error: local: no service given"),
        (["register", "nope", "--service", "web", "--port", "1"], "sd: error: backend 'nope'"),
        (["run", "nope:///web", "--port", "1", "--", "true"], "sd: error: backend 'nope'"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str) -> None:
    result = sd(*args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(message)


def test_malformed_option_is_not_echoed() -> None:
    result = sd("resolve", "local", "web", "-o", "token-s3cr3t")
    assert result.returncode == 2
    assert "s3cr3t" not in result.stderr
    assert "KEY=VALUE" in result.stderr
