"""Go peers read our registrations: go-kit's Consul instancer (tests/interop/gokit-consul),
built once per version of its sources by ``pytest_sd.interop.build_go``."""

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
from consul_helpers import MakeRegistrar
from pytest_sd.consul import ConsulServer
from pytest_sd.interop import build_go

from sd_core import Registration

SOURCE = Path(__file__).resolve().parents[3] / "tests" / "interop" / "gokit-consul"


@pytest.fixture(scope="session")
def gokit_consul() -> Path:
    """The path of the built go-kit discovery program."""
    return build_go(SOURCE, "gokit-consul")


class GoKitWatcher:
    """The go-kit program watching a service; its JSON lines in a queue."""

    def __init__(self, binary: Path, address: str, service: str, *, token: str | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
        if token:
            env["CONSUL_HTTP_TOKEN"] = token
        self.popen = subprocess.Popen(
            [str(binary), "-addr", address, "-service", service],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_events, args=(self.popen.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.popen.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_events(self, stream: IO[str]) -> None:
        for line in stream:
            self.events.put(json.loads(line))

    def _read_stderr(self, stream: IO[str]) -> None:
        self.stderr.extend(stream)

    def wait_for(self, instances: list[str], timeout: float) -> None:
        """Wait until go-kit reports exactly ``instances`` (host:port, sorted)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(event)
            if not event.get("error") and event["instances"] == sorted(instances):
                return
        raise AssertionError(
            f"go-kit did not report {instances} within {timeout:g} s; it reported {seen}; "
            f"stderr: {''.join(self.stderr)[-2000:]}"
        )

    def close(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def gokit_watcher(gokit_consul: Path) -> Iterator[Any]:
    made: list[GoKitWatcher] = []

    def watch(address: str, service: str, **kwargs: Any) -> GoKitWatcher:
        watcher = GoKitWatcher(gokit_consul, address, service, **kwargs)
        made.append(watcher)
        return watcher

    yield watch
    for watcher in made:
        watcher.close()


def test_gokit_sees_our_instances_with_their_address(
    consul_server: ConsulServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    gokit_watcher: Any,
) -> None:
    """Default ids (now ``<service>:<host>:<port>``) and explicit ones; two services on one
    host:port; go-kit reads ``Service.Address:Service.Port``."""
    api, admin = sd_namespace, f"{sd_namespace}-admin"
    api_watcher = gokit_watcher(consul_server.address, api)
    admin_watcher = gokit_watcher(consul_server.address, admin)
    api_watcher.wait_for([], 30.0)  # go-kit is up and watching
    first = make_registrar(Registration(api, "127.0.0.1", 21300, ttl=5))
    first.register()
    api_watcher.wait_for(["127.0.0.1:21300"], 10.0)
    make_registrar(Registration(admin, "127.0.0.1", 21300, ttl=5)).register()
    admin_watcher.wait_for(["127.0.0.1:21300"], 10.0)
    second = make_registrar(Registration(api, "127.0.0.2", 21301, id="api-2", ttl=5))
    second.register()
    api_watcher.wait_for(["127.0.0.1:21300", "127.0.0.2:21301"], 10.0)
    first.close()
    api_watcher.wait_for(["127.0.0.2:21301"], 10.0)
    second.close()
    api_watcher.wait_for([], 10.0)
    services = consul_server.api("GET", "/v1/agent/services").json()
    assert services[f"{admin}:127.0.0.1:21300"]["Service"] == admin  # not removed with api's
