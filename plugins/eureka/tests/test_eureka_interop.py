"""Spring Cloud Netflix's own Eureka client and ours see each other: a Spring Boot
application (tests/interop/eureka-client, built once per version of its sources by
``pytest_sd.interop.build_maven``) registers itself with metadata and prints what its
DiscoveryClient lists; we discover it, and it lists what we register."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from eureka_helpers import MakeInstancer, MakeRegistrar, wait_for
from pytest_sd._binaries import java
from pytest_sd._ports import free_port
from pytest_sd.eureka import EurekaServer
from pytest_sd.interop import build_maven

from sd_core import Registration

SOURCE = Path(__file__).resolve().parents[3] / "tests" / "interop" / "eureka-client"
STARTUP = 90.0
"""Seconds for the JVM to start, register and fetch (a loaded 2-core machine)."""
PEER_PROPAGATION = 10.0
"""Spring's client fetches every second (the peer's setting) and caches what it fetched."""


@pytest.fixture(scope="session")
def peer_jar() -> Path:
    """The built Spring Boot peer."""
    return build_maven(SOURCE, "eureka-client-peer.jar")


class SpringPeer:
    """The Spring Boot peer, registered as ``name`` and watching ``watch``; its JSON lines
    (what its DiscoveryClient lists, on each change) in a queue."""

    def __init__(
        self, jar: Path, server: EurekaServer, name: str, watch: str, metadata: dict[str, str]
    ) -> None:
        self.port = free_port()
        self.name = name
        command = [
            str(java()),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-jar",
            str(jar),
            f"--server.port={self.port}",
            f"--spring.application.name={name}",
            # Spring's form: the credentials in the URL, which ends with a slash.
            f"--eureka.client.service-url.defaultZone={server.credentials_url}/",
            f"--sd.watch={watch}",
            *(f"--eureka.instance.metadata-map.{k}={v}" for k, v in metadata.items()),
        ]
        self.popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[str] = []
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith('{"service"'):
                self.events.put(json.loads(line))
            else:
                self.log.append(line)

    def wait_for(self, service: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
        """The first list of ``service`` that passes ``check`` (AssertionError after
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(event)
            if event["service"] == service and check(event["instances"]):
                return event
        raise AssertionError(
            f"the Spring peer did not list {what} within {timeout:g} s; it listed {seen[-5:]}; "
            f"its log ends: {''.join(self.log)[-3000:]}"
        )

    def close(self) -> None:
        """SIGTERM: Spring deregisters on the way out."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._reader.join(10)


@pytest.fixture
def spring_peer(peer_jar: Path) -> Iterator[Any]:
    made: list[SpringPeer] = []

    def start(*args: Any, **kwargs: Any) -> SpringPeer:
        peer = SpringPeer(peer_jar, *args, **kwargs)
        made.append(peer)
        return peer

    yield start
    for peer in made:
        peer.close()


def test_spring_cloud_s_client_and_ours_see_each_other(
    eureka_server: EurekaServer,
    sd_namespace: str,
    make_instancer: MakeInstancer,
    make_registrar: MakeRegistrar,
    spring_peer: Any,
) -> None:
    theirs, ours = f"{sd_namespace}-spring", f"{sd_namespace}-ours"
    peer = spring_peer(
        eureka_server,
        theirs,
        watch=ours,
        metadata={"zone": "zone-a", "weight": "4", "team": "blue"},
    )
    # Theirs, as we discover it: Spring's instance id, host (ipAddr), port and metadata.
    with make_instancer(theirs).subscribe() as sub:
        event = wait_for(sub, lambda e: bool(e.instances), STARTUP, "the Spring application")
        (instance,) = event.instances
        assert instance.id.endswith(f":{theirs}:{peer.port}"), instance.id  # host:app:port
        assert (instance.host, instance.port, instance.service) == ("127.0.0.1", peer.port, theirs)
        assert (instance.zone, instance.weight) == ("zone-a", 4)
        assert instance.meta["team"] == "blue"
        assert instance.meta["management.port"] == str(peer.port)  # Spring adds it
        peer.wait_for(ours, lambda listed: listed == [], STARTUP, "an empty list of ours")

        # Ours, as Spring lists it (UP instances of the VIP address, host from hostName).
        registrar = make_registrar(
            Registration(
                ours,
                "127.0.0.1",
                20801,
                id="ours-1",
                tags=frozenset({"blue", "green"}),
                meta={"version": "2.0"},
                weight=3,
                zone="zone-b",
            )
        )
        registrar.register()
        listed = peer.wait_for(ours, lambda listed: len(listed) == 1, PEER_PROPAGATION, "ours")
        (item,) = listed["instances"]
        assert (item["instanceId"], item["host"], item["port"], item["secure"]) == (
            "ours-1",
            "127.0.0.1",
            20801,
            False,
        )
        assert item["metadata"] == {
            "version": "2.0",
            "zone": "zone-b",
            "weight": "3",
            "tags": "blue,green",
        }
        registrar.set_status("OUT_OF_SERVICE")
        peer.wait_for(ours, lambda listed: listed == [], PEER_PROPAGATION, "ours hidden")
        registrar.set_status("UP")
        peer.wait_for(ours, lambda listed: len(listed) == 1, PEER_PROPAGATION, "ours back")
        registrar.deregister()
        peer.wait_for(ours, lambda listed: listed == [], PEER_PROPAGATION, "ours gone")

        # Spring deregisters when it stops: gone from our instancer.
        peer.close()
        wait_for(sub, lambda e: e.ok and not e.instances, PEER_PROPAGATION, "theirs gone")
