"""Go peers read our registrations: go-kit's DNS SRV instancer (tests/interop/gokit-dnssrv,
beside this file), built once per version of its sources by ``pytest_sd.interop.build_go``,
asking the BIND fixture through Go's own resolver."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
from dnssrv_helpers import MakeRegistrar, bind_options
from pytest_sd.dns import BindServer
from pytest_sd.interop import build_go

from sd_core import Registration

SOURCE = Path(__file__).resolve().parent / "interop" / "gokit-dnssrv"


@pytest.fixture(scope="session")
def gokit_dnssrv() -> Path:
    """The path of the built go-kit discovery program."""
    return build_go(SOURCE, "gokit-dnssrv")


class GoKitWatcher:
    """The go-kit program watching an SRV name; its JSON lines in a queue."""

    def __init__(self, binary: Path, server: str, name: str) -> None:
        self.popen = subprocess.Popen(
            [str(binary), "-server", server, "-name", name, "-refresh", "200ms"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
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

    def wait_for(self, instances: list[str], addresses: list[str], timeout: float) -> None:
        """Wait until go-kit reports exactly ``instances`` (target.:port) whose targets the
        Go resolver finds at ``addresses`` (ip:port), both sorted."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(event)
            if (
                not event.get("error")
                and event["instances"] == sorted(instances)
                and event["addresses"] == sorted(addresses)
            ):
                return
        raise AssertionError(
            f"go-kit did not report {instances} at {addresses} within {timeout:g} s; it "
            f"reported {seen[-5:]}; stderr: {''.join(self.stderr)[-2000:]}"
        )

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        for thread in self._threads:
            thread.join(10)


def test_go_kit_reads_our_registrations_from_bind(
    gokit_dnssrv: Path,
    bind_server: BindServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
) -> None:
    options = bind_options(bind_server)
    zone = bind_server.zone
    name = f"_{sd_namespace}._tcp.{zone}"
    watcher = GoKitWatcher(gokit_dnssrv, bind_server.address, name)
    try:
        first = make_registrar(
            Registration(sd_namespace, "127.0.0.9", 8080, id="one", ttl=5), **options
        )
        second = make_registrar(
            Registration(sd_namespace, "::1", 8081, id="two", ttl=5, weight=3), **options
        )
        first.register()
        second.register()
        watcher.wait_for(
            [f"one.{sd_namespace}.{zone}:8080", f"two.{sd_namespace}.{zone}:8081"],
            ["127.0.0.9:8080", "[::1]:8081"],
            10,
        )
        first.deregister()
        watcher.wait_for([f"two.{sd_namespace}.{zone}:8081"], ["[::1]:8081"], 10)
    finally:
        watcher.stop()
