"""Peers read our nodes and we read theirs, with the real libraries: Spring Cloud Zookeeper 4.1
and Curator 5 (tests/interop/curator, a Java program built with Maven) and go-kit's sd/zk
(tests/interop/gokit-zk, built with Go), each built once per version of its sources."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from pytest_sd.interop import build_go, build_maven, unavailable
from pytest_sd.zookeeper import ZooKeeperServer
from zookeeper_helpers import MakeInstancer, MakeRegistrar, ids, wait_for

from sd_core import Registration

INTEROP = Path(__file__).resolve().parents[3] / "tests" / "interop"


@pytest.fixture(scope="session")
def curator_peer() -> list[str]:
    """The command line of the Spring Cloud Zookeeper / Curator peer."""
    java = shutil.which("java")
    if java is None:
        unavailable("Java is not installed: cannot run the Curator peer")
    jar = build_maven(INTEROP / "curator", "curator-peer.jar")
    return [str(java), "-Xmx128m", "-XX:TieredStopAtLevel=1", "-jar", str(jar)]


@pytest.fixture(scope="session")
def gokit_peer() -> list[str]:
    """The command line of the go-kit peer."""
    return [str(build_go(INTEROP / "gokit-zk", "gokit-zk"))]


class Peer:
    """A peer program; its JSON lines in a queue."""

    def __init__(self, command: list[str]) -> None:
        self.popen = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
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
        for text in stream:
            self.lines.put(json.loads(text))

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first line passing ``check`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                found = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(found)
            if check(found):
                return found
        raise AssertionError(
            f"the peer did not report {what} within {timeout:g} s; it reported {seen[-5:]}; "
            f"stderr: {''.join(self.stderr)[-3000:]}"
        )

    def finish(self) -> None:
        """Close its input (a registering peer deregisters and exits), then end it."""
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def run_peer() -> Iterator[Callable[[list[str]], Peer]]:
    made: list[Peer] = []

    def run(command: list[str]) -> Peer:
        peer = Peer(command)
        made.append(peer)
        return peer

    yield run
    for peer in made:
        peer.finish()


def instances_of(line: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Java peer's instances by id (a line with an error has none)."""
    return {i["id"]: i for i in line.get("instances") or []} if "error" not in line else {}


# -- Spring Cloud Zookeeper -----------------------------------------------------------------
def test_spring_cloud_zookeeper_discovers_ours_with_their_metadata(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_registrar: MakeRegistrar,
    curator_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    """Our default (Spring) nodes, as Spring Cloud Zookeeper's ZookeeperDiscoveryClient sees
    them: host, port, id, and tags, weight, zone, meta and status as string metadata."""
    connect = zookeeper_server.address + chroot
    spring = run_peer([*curator_peer, "watch", "--connect", connect, "--service", "orders"])
    spring.wait_for(lambda line: line.get("instances") == [], 60.0, "an empty service")
    registrar = make_registrar(
        Registration(
            "orders",
            "10.1.2.3",
            8443,
            id="orders-1",
            tags={"prod", "v2"},
            meta={"version": "1.4.2", "note": "ünïcode"},
            weight=5,
            zone="eu-1",
        )
    )
    registrar.register()
    line = spring.wait_for(lambda line: "orders-1" in instances_of(line), 10.0, "orders-1")
    seen = instances_of(line)["orders-1"]
    assert (seen["address"], seen["port"]) == ("10.1.2.3", 8443)
    assert seen["metadata"] == {
        "instance_status": "UP",
        "note": "ünïcode",
        "tags": "prod,v2",
        "version": "1.4.2",
        "weight": "5",
        "zone": "eu-1",
    }
    registrar.set_status("OUT_OF_SERVICE")
    spring.wait_for(
        lambda line: (
            instances_of(line).get("orders-1", {}).get("metadata", {}).get("instance_status")
            == "OUT_OF_SERVICE"
        ),
        10.0,
        "the status written",
    )
    registrar.deregister()
    spring.wait_for(lambda line: line.get("instances") == [], 10.0, "no instance")


def test_we_discover_what_spring_cloud_zookeeper_registers(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_instancer: MakeInstancer,
    curator_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    connect = zookeeper_server.address + chroot
    spring = run_peer(
        [
            *curator_peer,
            "register",
            "--connect",
            connect,
            "--service",
            "billing",
            "--id",
            "b-7",
            "--address",
            "10.9.8.7",
            "--port",
            "9090",
            "--meta",
            "zone=eu-2",
            "--meta",
            "weight=3",
            "--meta",
            "version=2",
        ]
    )
    spring.wait_for(lambda line: line.get("registered") == "b-7", 60.0, "its registration")
    written = json.loads(peer.get("/services/billing/b-7")[0])
    assert written["payload"]["@class"] == (
        "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"
    )
    with make_instancer("billing").subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"b-7"}, 10.0, "b-7")
        (instance,) = event.instances
        assert (instance.host, instance.port, instance.zone, instance.weight) == (
            "10.9.8.7",
            9090,
            "eu-2",
            3,
        )
        assert dict(instance.meta) == {"version": "2"}
        spring.finish()  # deregisters
        wait_for(sub, lambda e: e.ok and not e.instances, 10.0, "b-7 gone")


def test_our_nodes_have_the_shape_of_spring_cloud_zookeeper_s(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_registrar: MakeRegistrar,
    curator_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    """Same fields, in the same order, same types, same constants: compact JSON with nulls."""
    connect = zookeeper_server.address + chroot
    spring = run_peer(
        [
            *curator_peer,
            *("register", "--connect", connect, "--service", "shape"),
            *("--id", "theirs", "--address", "10.0.0.1", "--port", "80"),
        ]
    )
    spring.wait_for(lambda line: line.get("registered") == "theirs", 60.0, "its registration")
    make_registrar(Registration("shape", "10.0.0.2", 80, id="ours")).register()
    theirs_raw = peer.get("/services/shape/theirs")[0].decode()
    ours_raw = peer.get("/services/shape/ours")[0].decode()
    theirs, ours = json.loads(theirs_raw), json.loads(ours_raw)
    assert list(ours) == list(theirs)
    assert list(ours["payload"]) == list(theirs["payload"])
    for key in ("sslPort", "serviceType", "uriSpec"):
        assert ours[key] == theirs[key], key
    assert ours["payload"]["@class"] == theirs["payload"]["@class"]
    assert ours["payload"]["metadata"] == theirs["payload"]["metadata"] == {"instance_status": "UP"}
    assert type(ours["registrationTimeUTC"]) is int
    for raw, document in ((ours_raw, ours), (theirs_raw, theirs)):  # compact, nulls written
        assert raw == json.dumps(document, separators=(",", ":"), ensure_ascii=False)


# -- Curator with a Map payload -------------------------------------------------------------
def test_curator_map_payload_both_ways(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
    curator_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    connect = zookeeper_server.address + chroot
    curator = run_peer(
        [*curator_peer, "watch", "--connect", connect, "--service", "maps", "--payload", "map"]
    )
    curator.wait_for(lambda line: line.get("instances") == [], 60.0, "an empty service")
    make_registrar(
        Registration("maps", "10.3.3.3", 7000, id="ours", meta={"color": "blue"}),
        format="curator",
    ).register()
    line = curator.wait_for(lambda line: "ours" in instances_of(line), 10.0, "ours")
    seen = instances_of(line)["ours"]
    assert (seen["address"], seen["port"]) == ("10.3.3.3", 7000)
    assert seen["metadata"] == {"color": "blue", "instance_status": "UP"}

    registering = run_peer(
        [
            *curator_peer,
            *("register", "--connect", connect, "--service", "maps", "--payload", "map"),
            *("--id", "theirs", "--address", "10.4.4.4", "--port", "7001"),
            *("--meta", "color=red"),
        ]
    )
    registering.wait_for(lambda line: line.get("registered") == "theirs", 60.0, "registered")
    written = json.loads(peer.get("/services/maps/theirs")[0])
    assert written["payload"] == {"@class": "java.util.LinkedHashMap", "color": "red"}
    with make_instancer("maps").subscribe() as sub:
        event = wait_for(sub, lambda e: ids(e) == {"ours", "theirs"}, 10.0, "both")
    theirs = next(i for i in event.instances if i.id == "theirs")
    assert (theirs.host, theirs.port, dict(theirs.meta)) == ("10.4.4.4", 7001, {"color": "red"})


def test_the_readers_are_strict_about_the_payload_class(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    peer: Any,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
    curator_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    """A Spring reader cannot read a Map payload, nor a Map reader Spring's: with Curator 5.1
    (Spring Cloud Zookeeper 4.1's) one such node fails the whole query of the service, not
    just that node. We read both forms."""
    connect = zookeeper_server.address + chroot
    make_registrar(Registration("mixed", "10.5.5.5", 1, id="spring")).register()
    make_registrar(Registration("mixed", "10.5.5.6", 2, id="map"), format="curator").register()
    with make_instancer("mixed").subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"spring", "map"}, 10.0, "both forms")
    spring = run_peer([*curator_peer, "watch", "--connect", connect, "--service", "mixed"])
    curator = run_peer(
        [*curator_peer, "watch", "--connect", connect, "--service", "mixed", "--payload", "map"]
    )
    expected = {
        spring: "Cannot cast java.util.LinkedHashMap to org.springframework.cloud.zookeeper",
        curator: "Cannot cast org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",
    }
    for reader, error in expected.items():
        line = reader.wait_for(lambda line: True, 60.0, "a first answer")
        assert "ClassCastException" in line.get("error", ""), line
        assert error in line["error"], line


# -- go-kit ---------------------------------------------------------------------------------
def test_gokit_both_ways(
    *,
    zookeeper_server: ZooKeeperServer,
    sd_namespace: str,
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
    gokit_peer: list[str],
    run_peer: Callable[[list[str]], Peer],
) -> None:
    """go-kit reads the host:port nodes of format=hostport; we read the protected ephemeral
    sequential nodes its registrar creates."""
    base = f"/{sd_namespace}/services"  # go-kit's client takes no chroot
    options = {"chroot": "", "base_path": base}
    server = ["-servers", zookeeper_server.address, "-path", base, "-service", "api"]
    watcher = run_peer([*gokit_peer, *server, "-watch"])
    registrar = make_registrar(
        Registration("api", "10.6.6.6", 8080, id="ours"), format="hostport", **options
    )
    registrar.register()
    watcher.wait_for(lambda line: line.get("instances") == ["10.6.6.6:8080"], 30.0, "ours")

    registering = run_peer([*gokit_peer, *server, "-register", "10.7.7.7:8081"])
    registering.wait_for(lambda line: line.get("registered") == "10.7.7.7:8081", 30.0, "it")
    with make_instancer("api", **options).subscribe() as sub:
        event = wait_for(sub, lambda e: len(e.instances) == 2, 10.0, "both")
        addresses = sorted(i.address for i in event.instances)
        assert addresses == ["10.6.6.6:8080", "10.7.7.7:8081"]
        theirs = next(i for i in event.instances if i.id != "ours")
        assert theirs.id.startswith("_c_")  # a protected sequential node
        registering.finish()  # its session ends: ZooKeeper deletes the node
        wait_for(sub, lambda e: ids(e) == {"ours"}, 10.0, "only ours")
    registrar.deregister()
    watcher.wait_for(lambda line: line.get("instances") == [], 10.0, "none")
