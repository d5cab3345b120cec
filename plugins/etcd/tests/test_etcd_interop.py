"""Go peers, for real: go-kit's etcdv3 registrar and instancer (tests/interop/gokit-etcd,
built once per version of its sources by ``pytest_sd.interop.build_go``), on etcd 3.4 and
3.5. go-kit writes ``host:port`` values, which we read; with ``value=address`` we write
them, and go-kit reads ours."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from etcd_helpers import Gateway, MakeInstancer, MakeRegistrar, addresses, ids, wait_for
from pytest_sd.etcd import EtcdServer
from pytest_sd.interop import build_go

from sd_core import Registration

SOURCE = Path(__file__).resolve().parents[3] / "tests" / "interop" / "gokit-etcd"


@pytest.fixture(scope="session")
def gokit_etcd() -> Path:
    """The path of the built go-kit program."""
    return build_go(SOURCE, "gokit-etcd")


class GoKit:
    """The go-kit program (registering and/or watching); its JSON lines in a queue."""

    def __init__(self, binary: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.popen = subprocess.Popen(
            [str(binary), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**environment, **(env or {})},
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True),
            threading.Thread(target=self.stderr.extend, args=(self.popen.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(json.loads(line))

    def wait_for(self, check: Any, timeout: float, what: str) -> dict[str, Any]:
        """The first line that passes ``check``; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(line)
            if check(line):
                return line
        raise AssertionError(
            f"go-kit did not report {what} within {timeout:g} s; it reported {seen}; "
            f"stderr: {''.join(self.stderr)[-2000:]}"
        )

    def instances(self, expected: list[str], timeout: float = 10.0) -> None:
        """Wait until go-kit's instancer reports exactly ``expected`` (sorted)."""
        self.wait_for(
            lambda line: (
                "instances" in line
                and not line.get("error")
                and line["instances"] == sorted(expected)
            ),
            timeout,
            f"instances {expected}",
        )

    def close(self) -> None:
        """SIGTERM (go-kit deregisters), then wait for it."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def gokit(gokit_etcd: Path) -> Iterator[Any]:
    """Start go-kit programs (arguments as its command line); closed after the test."""
    made: list[GoKit] = []

    def start(*args: str, **kwargs: Any) -> GoKit:
        program = GoKit(gokit_etcd, *args, **kwargs)
        made.append(program)
        return program

    yield start
    for program in made:
        program.close()


def test_we_discover_what_go_kit_registers(
    etcd_server: EtcdServer, sd_namespace: str, make_instancer: MakeInstancer, gokit: Any
) -> None:
    key = f"/services/{sd_namespace}/10.1.2.3:8080"
    with make_instancer(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: e.ok and not e.instances, 5.0, "an empty service")
        registering = ["-register", key, "-value", "10.1.2.3:8080", "-ttl", "5s"]
        go = gokit("-endpoints", etcd_server.address, *registering)
        go.wait_for(lambda line: line.get("registered") == key, 30.0, "its registration")
        event = wait_for(sub, lambda e: len(e.instances) == 1, 5.0, "go-kit's instance")
        (instance,) = event.instances
        assert (instance.address, instance.id, instance.service) == (
            "10.1.2.3:8080",
            "10.1.2.3:8080",
            sd_namespace,
        )
        stored = Gateway(etcd_server).get(key)
        assert stored is not None and stored["value"] == b"10.1.2.3:8080" and stored["lease"]
        go.close()  # go-kit's Deregister deletes the key
        wait_for(sub, lambda e: e.ok and not e.instances, 5.0, "go-kit's instance gone")


def test_go_kit_discovers_what_we_register_with_value_address(
    etcd_server: EtcdServer, sd_namespace: str, make_registrar: MakeRegistrar, gokit: Any
) -> None:
    go = gokit("-endpoints", etcd_server.address, "-watch", f"/services/{sd_namespace}/")
    go.instances([], timeout=30.0)  # go-kit is up and watching
    first = make_registrar(Registration(sd_namespace, "127.0.0.1", 21300, ttl=3), value="address")
    first.register()
    go.instances(["127.0.0.1:21300"])
    second = make_registrar(
        Registration(sd_namespace, "::1", 21301, id="b", ttl=3), value="address"
    )
    second.register()
    go.instances(["127.0.0.1:21300", "[::1]:21301"])
    first.close()
    go.instances(["[::1]:21301"])
    second.close()
    go.instances([])


def test_both_directions_at_once(
    etcd_server: EtcdServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
    gokit: Any,
) -> None:
    """A Go service and a Python service of one name, each discovering both."""
    prefix = f"/services/{sd_namespace}/"
    registering = ["-register", prefix + "go", "-value", "10.9.9.9:9000", "-ttl", "5s"]
    go = gokit("-endpoints", etcd_server.address, "-watch", prefix, *registering)
    go.wait_for(lambda line: line.get("registered") == prefix + "go", 30.0, "its registration")
    ours = make_registrar(
        Registration(sd_namespace, "10.8.8.8", 8000, id="py", ttl=3), value="address"
    )
    ours.register()
    go.instances(["10.8.8.8:8000", "10.9.9.9:9000"])
    with make_instancer(sd_namespace).subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"go", "py"}, 5.0, "both")
    assert addresses(event) == {"10.8.8.8:8000", "10.9.9.9:9000"}
