"""The managed server process: start, readiness wait, and the fault handles tests use."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar


class ServerError(RuntimeError):
    """A test server did not start, became unready, or could not be stopped."""


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    abort: Callable[[], None] | None = None,
) -> None:
    """Poll ``check`` until it returns true; raise ServerError after ``timeout`` seconds.

    ``abort`` is called between polls and may raise to stop waiting early (a dead process).
    Exceptions from ``check`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        if abort is not None:
            abort()
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


_live: set[ManagedProcess] = set()


def stop_all() -> None:
    """Stop every server process still running in this Python process."""
    for server in list(_live):
        try:
            server.stop()
        except Exception:
            server.kill()


atexit.register(stop_all)


class ManagedProcess:
    """One server process owned by a test run.

    Subclasses provide :meth:`command` and :meth:`is_ready`, and may override :meth:`prepare`
    (write configuration before each start) and :meth:`wipe_state`. The process gets its own
    session and process group; it is signalled by PID (its group), never by name.

    Fault handles: :meth:`stop` (SIGTERM, then SIGKILL after ``stop_timeout``), :meth:`kill`
    (SIGKILL), :meth:`pause` / :meth:`resume` (SIGSTOP / SIGCONT: a hung server),
    :meth:`start` and :meth:`restart`.
    """

    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 10.0
    address: str
    """``host:port`` clients connect to; each server sets it."""

    def __init__(self, name: str, data_dir: Path) -> None:
        self.name = name
        self.data_dir = data_dir
        self.log_path = data_dir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        data_dir.mkdir(parents=True, exist_ok=True)

    # -- to override ------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line that runs the server in the foreground."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        """Whether the server answers as it should (a real request, not a port check)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration files; called before each start."""

    def state_paths(self) -> Iterable[Path]:
        """What :meth:`wipe_state` deletes."""
        return ()

    def environment(self) -> dict[str, str]:
        """Extra environment variables for the process."""
        return {}

    # -- state ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive (possibly paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self.running and self._paused

    def wipe_state(self) -> None:
        """Delete the server's persistent state; only while it is not running."""
        if self.running:
            raise ServerError(f"{self.name}: cannot wipe the state of a running server")
        for path in self.state_paths():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # -- fault handles ------------------------------------------------------------------------
    def start(self, *, wipe: bool = False, wait: bool = True) -> None:
        """Start; with ``wipe`` delete its state first; with ``wait`` wait until it is ready."""
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        if wipe:
            self.wipe_state()
        self.prepare()
        cmd = self.command()
        env = {**os.environ, **self.environment()}
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- pytest-sd: starting {self.name}: {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,
            )
        self._paused = False
        _live.add(self)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until :meth:`is_ready`; raise ServerError with the log's tail on failure."""
        try:
            wait_until(
                self.is_ready,
                timeout=self.start_timeout if timeout is None else timeout,
                what=f"{self.name} to be ready",
                abort=self._raise_if_exited,
            )
        except ServerError as exc:
            raise ServerError(
                f"{exc}\n--- last lines of {self.log_path}:\n{self.log_tail()}"
            ) from None

    def _raise_if_exited(self) -> None:
        if self._proc is None:
            raise ServerError(f"{self.name} is not started")
        code = self._proc.poll()
        if code is not None:
            raise ServerError(f"{self.name} exited with status {code}")

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (SIGTERM); SIGKILL if it has not exited within the timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            if self._paused:
                self._signal(signal.SIGCONT)
            try:
                proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(10)
        self._finish()

    def kill(self) -> None:
        """Kill with SIGKILL (a crash: no graceful shutdown)."""
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        proc.wait(10)
        self._finish()

    def _finish(self) -> None:
        self._paused = False
        _live.discard(self)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: it keeps its sockets but answers nothing."""
        if not self.running:
            raise ServerError(f"{self.name} is not running")
        self._signal(signal.SIGSTOP)
        self._paused = True
        # SIGSTOP is delivered asynchronously: wait until every thread is stopped, or a
        # request sent right after pause() may still be answered.
        wait_until(self._all_threads_stopped, timeout=5, what=f"{self.name} to stop (SIGSTOP)")

    def _all_threads_stopped(self) -> bool:
        pid = self.pid
        if pid is None:
            return True
        task_dir = Path(f"/proc/{pid}/task")
        if not task_dir.is_dir():
            return True
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                stat = (task / "stat").read_text()
                if stat[stat.rindex(")") + 2] not in "Tt":
                    return False
        return True

    def resume(self) -> None:
        """Continue a paused process with SIGCONT."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self, *, wipe: bool = False, wait: bool = True) -> None:
        """Stop gracefully, then start again (optionally with wiped state)."""
        self.stop()
        self.start(wipe=wipe, wait=wait)

    def ensure_running(self) -> None:
        """Bring the server back to a running, ready state after faults."""
        if self.paused:
            self.resume()
        if not self.running:
            self._finish()
            self.start()
        else:
            self.wait_ready()

    # -- logs -------------------------------------------------------------------------------
    def log_size(self) -> int:
        """Current size of the log file in bytes."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def read_log(self, start: int = 0, max_bytes: int = 64_000) -> str:
        """The log from byte ``start`` on, at most its last ``max_bytes`` bytes."""
        try:
            with open(self.log_path, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                f.seek(max(start, end - max_bytes))
                data = f.read()
        except FileNotFoundError:
            return ""
        return data.decode(errors="replace")

    def log_tail(self, max_bytes: int = 4_000) -> str:
        """The last ``max_bytes`` bytes of the log."""
        return self.read_log(0, max_bytes)

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name} {state} pid={self.pid}>"
