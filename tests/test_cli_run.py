"""``sd run``, run for real: child processes, real signals, the ``local`` backend and Consul."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from pytest_sd import wait_for_event
from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Event
from sd_core.cli import _readiness
from sd_core.cli._readiness import Listener, Readiness, ReadyUrl, receiving

SD = [sys.executable, "-m", "sd_core.cli"]
PY = sys.executable
WAIT = 20.0
LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="Linux only (/proc, PR_SET_PDEATHSIG)")


def environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SD, *args], check=False, capture_output=True, text=True, timeout=timeout, env=environ()
    )


class Process:
    """A running ``sd`` whose output lines are read by two threads it owns."""

    def __init__(
        self,
        *args: str,
        stdin: int | None = subprocess.DEVNULL,
        ignoring: tuple[signal.Signals, ...] = (),
    ) -> None:
        def ignore() -> None:  # as nohup does
            for signum in ignoring:
                signal.signal(signum, signal.SIG_IGN)

        self.popen = subprocess.Popen(
            [*SD, *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ(),
            preexec_fn=ignore if ignoring else None,  # noqa: PLW1509
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

    def wait_for_stderr(self, text: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(self.stderr, max(0.0, deadline - time.monotonic()))
            self.err_lines.append(line)
            if text in line:
                return line

    def signal(self, signum: int) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(timeout=WAIT)

    def all_stderr(self) -> str:
        """Everything sd wrote on stderr (less the lines taken by ``line``), once it exited."""
        self.popen.wait(timeout=WAIT)
        self._threads[1].join(timeout=WAIT)
        while not self.stderr.empty():
            self.err_lines.append(self.stderr.get_nowait())
        return "".join(self.err_lines)

    def rest_of_stdout(self) -> list[str]:
        """The lines on stdout not taken yet, once sd exited."""
        self.popen.wait(timeout=WAIT)
        self._threads[0].join(timeout=WAIT)
        lines: list[str] = []
        while not self.stdout.empty():
            lines.append(self.stdout.get_nowait().strip())
        return lines

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


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- processes this test started, directly or not ----------------------------------------------


def _start_time(pid: int) -> str | None:
    """The start time of a running (not zombie) process, None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else fields[19]


class Strays:
    """Processes a test learnt of (by pid); killed after the test if they outlived it."""

    def __init__(self) -> None:
        self.known: dict[int, str | None] = {}

    def add(self, pid: int) -> int:
        self.known[pid] = _start_time(pid)
        assert self.known[pid] is not None, f"process {pid} is not running"
        return pid

    def gone(self, pid: int) -> bool:
        started = _start_time(pid)
        return started is None or started != self.known[pid]

    def kill_the_living(self) -> None:
        for pid in self.known:
            if not self.gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def strays() -> Iterator[Strays]:
    known = Strays()
    yield known
    known.kill_the_living()


LISTENER = """
import os, socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print(os.getpid(), flush=True)
time.sleep(600)
"""

SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"


def run_local(tmp_path: Path, port: int, *command: str, extra: tuple[str, ...] = ()) -> Process:
    return Process(
        "run", "local:///web", "--port", str(port), "-o", f"path={tmp_path}", *extra,
        "--", *command,
    )  # fmt: skip


# -- the basics --------------------------------------------------------------------------------


def test_run_http_server(tmp_path: Path, processes: list[Process]) -> None:
    port = free_port()
    run = Process(
        "run", "local", "--service", "web", "--port", str(port), "-o", f"path={tmp_path}",
        "--", PY, "-m", "http.server", str(port), "--bind", "127.0.0.1",
        "--directory", str(tmp_path),
    )  # fmt: skip
    processes.append(run)
    run.wait_for_stderr("sd: registered web")
    # Registered only once the port answers.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=WAIT) as response:
        assert response.status == 200
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    # SIGTERM goes to the server, which dies of it: 128 + 15.
    assert run.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    assert instances(tmp_path) == []


STDIN_CHILD = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
sys.stdin.read()  # serve until stdin closes
sys.exit(7)
"""


def test_run_passes_the_exit_status_through(tmp_path: Path, processes: list[Process]) -> None:
    port = free_port()
    run = Process(
        "run", "local:///web", "--port", str(port), "-o", f"path={tmp_path}",
        "--", PY, "-c", STDIN_CHILD, str(port),
        stdin=subprocess.PIPE,
    )  # fmt: skip
    processes.append(run)
    run.wait_for_stderr("sd: registered web")
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    assert run.popen.stdin is not None
    run.popen.stdin.close()
    assert run.popen.wait(timeout=WAIT) == 7
    assert instances(tmp_path) == []


def test_run_forwards_sigint(tmp_path: Path, processes: list[Process]) -> None:
    port = free_port()
    run = run_local(tmp_path, port, PY, "-m", "http.server", str(port), "--bind", "127.0.0.1")
    processes.append(run)
    run.wait_for_stderr("sd: registered web")
    # http.server ends on KeyboardInterrupt; its status is passed through.
    status = run.signal(signal.SIGINT)
    assert status in {0, 1, 128 + signal.SIGINT}
    wait_until(lambda: instances(tmp_path) == [])


def test_run_child_exits_before_ready(tmp_path: Path) -> None:
    port = free_port()
    result = sd(
        "run", "local:///web", "--port", str(port), "-o", f"path={tmp_path}",
        "--", PY, "-c", "raise SystemExit(3)",
    )  # fmt: skip
    assert result.returncode == 3
    assert "exited with status 3 before" in result.stderr
    assert instances(tmp_path) == []


def test_run_ready_timeout(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = sd(
        "run", "local:///web", "--port", str(port), "--ready-timeout", "1",
        "-o", f"path={tmp_path}", "--", PY, "-c", SLEEPER,
    )  # fmt: skip
    assert result.returncode == 1
    reason = f"nothing listens on port {port}" if LINUX else "did not accept connections"
    assert "was not ready within 1 s: " in result.stderr
    assert reason in result.stderr
    assert time.monotonic() - started < 15
    assert _start_time(int(result.stdout)) is None  # the command was stopped


# -- 11: signals are passed on; sd supervises to the end; sd's death takes the child down ------

HANDLER = """
import os, signal, socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def report(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(9)
for name in ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGTERM"):
    signal.signal(getattr(signal, name), report)
print(os.getpid(), flush=True)
time.sleep(600)
"""


def test_run_passes_signals_on_and_keeps_supervising(
    tmp_path: Path, processes: list[Process], strays: Strays
) -> None:
    port = free_port()
    run = run_local(tmp_path, port, PY, "-c", HANDLER, str(port))
    processes.append(run)
    child = strays.add(int(run.line(run.stdout)))
    run.wait_for_stderr("sd: registered web")
    for signum in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT):
        run.popen.send_signal(signum)
        assert run.line(run.stdout).strip() == signum.name
        assert run.popen.poll() is None, f"sd ended on {signum.name}"
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    # The child exits (on SIGTERM, with status 9): sd deregisters and exits with its status.
    assert run.signal(signal.SIGTERM) == 9
    assert run.line(run.stdout).strip() == "SIGTERM"
    assert "sd: deregistered web" in run.all_stderr()
    assert instances(tmp_path) == []
    wait_until(lambda: strays.gone(child))


@pytest.mark.parametrize(
    "signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2], ids=lambda s: s.name
)
def test_run_exits_with_the_child_a_signal_ended(
    tmp_path: Path, processes: list[Process], strays: Strays, signum: signal.Signals
) -> None:
    port = free_port()
    run = run_local(tmp_path, port, PY, "-c", LISTENER, str(port))
    processes.append(run)
    child = strays.add(int(run.line(run.stdout)))
    run.wait_for_stderr("sd: registered web")
    # A closing terminal sends SIGHUP: the child dies of it, and sd deregisters it.
    assert run.signal(signum) == 128 + signum
    assert "sd: deregistered web" in run.all_stderr()
    assert instances(tmp_path) == []
    wait_until(lambda: strays.gone(child))


@linux_only
def test_run_leaves_a_signal_it_was_started_ignoring_ignored(
    tmp_path: Path, processes: list[Process], strays: Strays
) -> None:
    port = free_port()
    run = Process(
        "run", "local:///web", "--port", str(port), "-o", f"path={tmp_path}",
        "--", PY, "-c", LISTENER, str(port),
        ignoring=(signal.SIGHUP,),
    )  # fmt: skip
    processes.append(run)
    child = strays.add(int(run.line(run.stdout)))
    run.wait_for_stderr("sd: registered web")
    run.popen.send_signal(signal.SIGHUP)  # ignored by sd, and by the child had it got it
    # Had SIGHUP been passed on, the child would have got it first (lower numbers first).
    assert run.signal(signal.SIGUSR1) == 128 + signal.SIGUSR1
    assert instances(tmp_path) == []
    wait_until(lambda: strays.gone(child))


PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
sys.exit(child.wait())
"""


def test_run_signals_the_whole_process_group(
    tmp_path: Path, processes: list[Process], strays: Strays
) -> None:
    # COMMAND starts the listener and waits for it, as a shell would.
    port = free_port()
    run = run_local(tmp_path, port, PY, "-c", PARENT, LISTENER, str(port))
    processes.append(run)
    grandchild = strays.add(int(run.line(run.stdout)))
    # A descendant of COMMAND holds the port: that is COMMAND serving it.
    run.wait_for_stderr("sd: registered web")
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    # SIGTERM reaches the listener too, not only its parent (which would orphan it).
    assert run.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    wait_until(lambda: strays.gone(grandchild))
    assert instances(tmp_path) == []


def _sigkill_sd(run: Process) -> None:
    run.popen.kill()
    assert run.popen.wait(timeout=WAIT) == -signal.SIGKILL


@linux_only
def test_sigkill_of_sd_local(tmp_path: Path, processes: list[Process], strays: Strays) -> None:
    ttl, margin = 2.0, 5.0
    port = free_port()
    run = run_local(tmp_path, port, PY, "-c", LISTENER, str(port), extra=("--ttl", str(ttl)))
    processes.append(run)
    child = strays.add(int(run.line(run.stdout)))
    run.wait_for_stderr("sd: registered web")
    with sd_core.instancer("local", "web", path=str(tmp_path)) as instancer:
        sub = instancer.subscribe()
        wait_for_event(sub, lambda e: len(e.instances) == 1, WAIT, "the instance")
        _sigkill_sd(run)
        wait_for_event(sub, lambda e: e.ok and not e.instances, ttl + margin, "no instance")
    wait_until(lambda: strays.gone(child))


@linux_only
def test_sigkill_of_sd_consul(
    consul_server: ConsulServer,
    sd_namespace: str,
    processes: list[Process],
    strays: Strays,
) -> None:
    ttl, margin = 2.0, 5.0
    port = free_port()
    run = Process(
        "run", "consul", "--service", sd_namespace, "--port", str(port), "--ttl", str(ttl),
        "-o", f"address={consul_server.address}", "--", PY, "-c", LISTENER, str(port),
    )  # fmt: skip
    processes.append(run)
    child = strays.add(int(run.line(run.stdout)))
    run.wait_for_stderr(f"sd: registered {sd_namespace}")
    options: dict[str, Any] = {"address": consul_server.address, "wait": 2.0, "timeout": 2.0}
    with sd_core.instancer("consul", sd_namespace, **options) as instancer:  # passing only
        sub = instancer.subscribe()

        def present(event: Event) -> bool:
            return [i.address for i in event.instances] == [f"127.0.0.1:{port}"]

        wait_for_event(sub, present, WAIT, "the instance")
        _sigkill_sd(run)
        wait_for_event(sub, lambda e: e.ok and not e.instances, ttl + margin, "no instance")
    wait_until(lambda: strays.gone(child))


RACE = """
import os, sys, time
from sd_core.cli._signals import parent_death_signal
in_child = parent_death_signal()  # made in the parent, as sd makes it
parent = os.getpid()
r, w = os.pipe()
if os.fork() == 0:
    os.close(w)
    os.read(r, 1)  # end of file: the parent is exiting
    deadline = time.monotonic() + 10
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)  # until it is reparented
    print("orphaned" if os.getppid() != parent else "not orphaned", flush=True)
    in_child()  # what the child runs before exec: the parent died before it
    print("would run the command", flush=True)
    os._exit(0)
os._exit(0)
"""


@linux_only
def test_a_child_whose_parent_died_before_its_prctl_does_not_run_the_command() -> None:
    # Its stdout is this pipe: run() returns once the orphaned child has exited too.
    result = subprocess.run(
        [PY, "-c", RACE], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "orphaned\n", result.stdout + result.stderr


# -- 12: readiness is the command serving HOST:PORT --------------------------------------------


@linux_only
def test_run_never_registers_a_child_while_another_process_holds_the_port(
    tmp_path: Path, processes: list[Process], strays: Strays
) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # held by this test's process
        run = run_local(tmp_path, port, PY, "-c", SLEEPER, extra=("--ready-timeout", "5"))
        processes.append(run)
        child = strays.add(int(run.line(run.stdout)))
        held = f"port {port} is held by pid {os.getpid()} ("
        run.wait_for_stderr(held)
        assert instances(tmp_path) == []
        assert run.popen.wait(timeout=WAIT) == 1
        err = run.all_stderr()
    assert "registered" not in err
    assert err.count(held) == 2, err  # once while waiting, once in the final error
    assert f"was not ready within 5 s: {held}" in err
    assert instances(tmp_path) == []
    wait_until(lambda: strays.gone(child))


BINDER = """
import errno, socket, sys, time
port = int(sys.argv[1])
deadline = time.monotonic() + 60
while True:
    try:
        server = socket.create_server(("127.0.0.1", port))
        break
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
            raise
        time.sleep(0.02)
print("listening", flush=True)
time.sleep(600)
"""


@linux_only
def test_run_waits_for_the_port_and_registers_once_the_child_holds_it(
    tmp_path: Path, processes: list[Process]
) -> None:
    port = free_port()
    held = socket.create_server(("127.0.0.1", port))
    try:
        run = run_local(tmp_path, port, PY, "-c", BINDER, str(port))
        processes.append(run)
        run.wait_for_stderr(f"port {port} is held by pid {os.getpid()} (")
        assert instances(tmp_path) == []
    finally:
        held.close()
    assert run.line(run.stdout).strip() == "listening"
    run.wait_for_stderr("sd: registered web")
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    assert run.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    assert run.all_stderr().count("is held by") == 1
    assert instances(tmp_path) == []


def test_run_no_check_owner_takes_any_listener(
    tmp_path: Path, processes: list[Process], strays: Strays
) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        run = run_local(tmp_path, port, PY, "-c", SLEEPER, extra=("--no-check-owner",))
        processes.append(run)
        strays.add(int(run.line(run.stdout)))
        run.wait_for_stderr("sd: registered web")
        assert run.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    assert "is held by" not in run.all_stderr()


HTTP_SERVER = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, flag, ready_status = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = ready_status if self.path == "/health" and os.path.exists(flag) else 503
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/down")  # answers 503: not followed
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(self.path, status, flush=True)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.mark.parametrize("ready_status", [200, 302])
def test_run_ready_url(
    tmp_path: Path, processes: list[Process], strays: Strays, ready_status: int
) -> None:
    port = free_port()
    flag = tmp_path / "ready"
    run = run_local(
        tmp_path, port, PY, "-c", HTTP_SERVER, str(port), str(flag), str(ready_status),
        extra=("--ready-url", f"http://127.0.0.1:{port}/health"),
    )  # fmt: skip
    processes.append(run)
    # It answers 503: not ready.
    assert run.line(run.stdout).strip() == "/health 503"
    assert instances(tmp_path) == []
    assert run.stderr.empty()
    flag.touch()
    run.wait_for_stderr("sd: registered web")
    assert instances(tmp_path) == [f"127.0.0.1:{port}"]
    assert run.signal(signal.SIGTERM) == 128 + signal.SIGTERM
    lines = run.rest_of_stdout()
    assert lines[-1] == f"/health {ready_status}"
    assert "/down 503" not in lines
    assert instances(tmp_path) == []


def test_run_ready_url_must_be_http(tmp_path: Path) -> None:
    result = sd(
        "run", "local:///web", "--port", "1", "--ready-url", "ftp://127.0.0.1/",
        "-o", f"path={tmp_path}", "--", PY, "-c", "raise SystemExit(5)",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--ready-url" in result.stderr
    assert "http:// or https://" in result.stderr


def test_ready_url_keeps_its_credentials_out_of_sight() -> None:
    url = ReadyUrl.parse("https://ops:s3cr3t@[::1]:8443/health?deep=1")
    assert (url.host, url.port, url.target) == ("::1", 8443, "/health?deep=1")
    assert url.shown == "https://[::1]:8443/health?deep=1"
    assert url.authorization == "Basic b3BzOnMzY3IzdA=="
    assert "s3cr3t" not in repr(url)
    assert "b3BzOnMzY3IzdA" not in repr(url)
    assert ReadyUrl.parse("http://127.0.0.1").target == "/"
    for bad in ("ftp://host/", "http:///path", "127.0.0.1:80", "http://host:99999/"):
        with pytest.raises(ValueError, match=r"URL|[Pp]ort"):
            ReadyUrl.parse(bad)


def test_receiving_prefers_the_most_specific_binding() -> None:
    import ipaddress

    def listener(address: str, inode: int, ipv6: bool) -> Listener:
        return Listener(ipaddress.ip_address(address), 80, inode, ipv6)

    wild4, wild6 = listener("0.0.0.0", 1, False), listener("::", 2, True)
    lo4, other = listener("127.0.0.1", 3, False), listener("10.0.0.5", 4, False)
    target = ipaddress.ip_address("127.0.0.1")
    assert receiving([wild4, wild6, lo4, other], [target]) == [lo4]
    assert receiving([wild4, wild6, other], [target]) == [wild4]
    assert receiving([wild6, other], [target]) == [wild6]
    assert receiving([wild4, wild6], [ipaddress.ip_address("::1")]) == [wild6]
    # None would take it (a NATed address, say): every listener on the port counts.
    assert receiving([other], [target]) == [other]


def test_without_proc_readiness_is_the_connect_check(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        said: list[str] = []
        readiness = Readiness("127.0.0.1", port, say=said.append, proc=str(tmp_path))
        assert not readiness.owner_checked
        assert readiness.check(os.getpid(), time.monotonic() + WAIT) is None
    assert said == []


@linux_only
@pytest.mark.parametrize("children_files", [True, False], ids=["children-files", "ppid-scan"])
def test_process_tree(
    monkeypatch: pytest.MonkeyPatch, strays: Strays, children_files: bool
) -> None:
    if not children_files:  # a kernel without CONFIG_PROC_CHILDREN
        monkeypatch.setattr(_readiness, "_children", lambda pid, proc: None)
    parent = subprocess.Popen([PY, "-c", PARENT, SLEEPER, "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        grandchild = strays.add(int(parent.stdout.readline()))
        assert _readiness.process_tree(parent.pid) == {parent.pid, grandchild}
        assert _readiness.process_tree(grandchild) == {grandchild}
    finally:
        parent.kill()
        parent.wait(timeout=WAIT)
        assert parent.stdout is not None
        parent.stdout.close()
