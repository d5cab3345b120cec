"""A registrar in a child process: for tests of what happens when a registering process
hangs (SIGSTOP) or dies (SIGKILL) without cleaning up.

The child is ``python -m pytest_sd.registering_child SPEC_JSON``: it registers through
the named backend, prints ``READY``, and deregisters and exits when its standard input
closes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import sd_core
from sd_core import Registration
from sd_core._closing import Closing

__all__ = ["RegisteringChild"]


class RegisteringChild(Closing):
    """Starts the child and waits until it registered (``AssertionError`` after
    ``timeout``). ``close()`` lets it deregister cleanly; ``kill()`` does not."""

    def __init__(
        self,
        backend: str,
        registration: Registration,
        options: Mapping[str, Any] | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        spec = {
            "backend": backend,
            "options": dict(options or {}),
            "registration": {
                "service": registration.service,
                "host": registration.host,
                "port": registration.port,
                "id": registration.id,
                "tags": sorted(registration.tags),
                "meta": dict(registration.meta),
                "ttl": registration.ttl,
                "weight": registration.weight,
                "zone": registration.zone,
            },
        }
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_sd.registering_child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                break
            line = stdout.readline()
            if not line:
                break  # it exited
            self.output.append(line)
            if line.strip() == "READY":
                return
        self.kill()
        raise AssertionError(f"the registering child did not get ready:\n{''.join(self.output)}")

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def pause(self) -> None:
        """SIGSTOP the child: its keepalive stops, as in a hung process."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused child."""
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the child (no clean-up runs in it) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close_pipes()

    def close(self, timeout: float = 15.0) -> None:
        """Let the child deregister and exit (resuming it if paused); kill it if it does not."""
        if self.proc.poll() is None:
            self.resume()
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _main() -> None:
    spec = json.loads(sys.argv[1])
    registration = Registration(**spec["registration"])
    with sd_core.registrar(spec["backend"], registration, **spec["options"]):
        print("READY", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    _main()
