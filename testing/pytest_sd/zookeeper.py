"""ZooKeeper 3.8 servers and ensembles for tests."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from . import _binaries
from ._cluster import Cluster
from ._ports import HOST, free_ports
from ._process import ManagedProcess
from .certificates import Certificates

TICK_TIME_MS = 500


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (``srvr``, ``ruok``, ``mntr``) and return the answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode())
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class ZooKeeperServer(ManagedProcess):
    """One ZooKeeper server (standalone or an ensemble member) on 127.0.0.1.

    Attributes: ``host``, ``port`` (client port), ``address`` / ``connect_string``
    (``host:port``), ``server_id``, ``tick_time_ms`` (sessions time out between 2 and 20
    ticks), ``data_dir``, ``log_path``. :meth:`mode` asks ``srvr`` for standalone / leader /
    follower.
    """

    start_timeout = 60.0

    def __init__(self, data_dir: Path, *, name: str = "zookeeper", server_id: int = 1) -> None:
        super().__init__(name, data_dir)
        self.java = _binaries.java()
        self.classpath = _binaries.zookeeper_classpath()
        self.host = HOST
        self.port, self.quorum_port, self.election_port = free_ports(3)
        self.address = f"{self.host}:{self.port}"
        self.connect_string = self.address
        self.server_id = server_id
        self.tick_time_ms = TICK_TIME_MS
        self.peers: list[ZooKeeperServer] = []
        self.config_path = data_dir / "zoo.cfg"
        self.state_dir = data_dir / "state"

    def config(self) -> str:
        """The zoo.cfg written before each start."""
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={self.state_dir}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr",
            "maxClientCnxns=0",
        ]
        for peer in self.peers:
            lines.append(
                f"server.{peer.server_id}={peer.host}:{peer.quorum_port}:{peer.election_port}"
            )
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "myid").write_text(f"{self.server_id}\n")
        self.config_path.write_text(self.config())

    def command(self) -> list[str]:
        return [
            str(self.java),
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={self.data_dir}",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            self.classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.config_path),
        ]

    def state_paths(self) -> Iterable[Path]:
        return [self.state_dir]

    def four_letter_word(self, word: str, timeout: float = 2.0) -> str:
        """Send a four-letter command to this server."""
        return four_letter_word(self.host, self.port, word, timeout)

    def mode(self) -> str | None:
        """``standalone``, ``leader`` or ``follower``; None while the server does not serve."""
        for line in self.four_letter_word("srvr", timeout=1.0).splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def is_ready(self) -> bool:
        return self.mode() is not None


class ZooKeeperTLSServer(ZooKeeperServer):
    """A standalone ZooKeeper server that also serves clients over TLS (Netty, PEM files) at
    ``tls_port`` / ``tls_address``, asking them for a certificate of its CA when they have one
    (``ssl.clientAuth=want``); ``certificates`` are its
    :class:`~pytest_sd.certificates.Certificates`. The plain ``port`` stays open, for the
    readiness check."""

    def __init__(self, data_dir: Path, *, name: str = "zookeeper-tls") -> None:
        super().__init__(data_dir, name=name)
        # Debian's zookeeper.jar lists the netty jars its plain Netty transport needs, not
        # the codec that TLS needs (same package, libnetty-java).
        extra = [Path(f"/usr/share/java/netty-{jar}.jar") for jar in ("codec", "resolver")]
        self.classpath = ":".join([self.classpath, *(str(j) for j in extra if j.is_file())])
        self.certificates = Certificates(data_dir / "tls")
        (self.tls_port,) = free_ports(1)
        self.tls_address = f"{self.host}:{self.tls_port}"
        self.keystore = data_dir / "tls" / "server-keystore.pem"

    def config(self) -> str:
        certs = self.certificates
        lines = [
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"secureClientPort={self.tls_port}",
            f"secureClientPortAddress={self.host}",
            f"ssl.keyStore.location={self.keystore}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={certs.ca}",
            "ssl.trustStore.type=PEM",
            "ssl.clientAuth=want",
        ]
        return super().config() + "\n".join(lines) + "\n"

    def prepare(self) -> None:
        certs = self.certificates
        self.keystore.write_text(certs.server_key.read_text() + certs.server_cert.read_text())
        super().prepare()


class ZooKeeperEnsemble(Cluster[ZooKeeperServer]):
    """A quorum of ZooKeeper servers on 127.0.0.1.

    Attributes: ``members`` (:class:`ZooKeeperServer`, each with the fault handles),
    ``connect_string`` (``host:port,host:port,…``), ``addresses``.
    """

    start_timeout = 90.0

    def __init__(self, data_dir: Path, size: int = 3) -> None:
        self.data_dir = data_dir
        self.members = [
            ZooKeeperServer(data_dir / f"zk{i}", name=f"zk{i}", server_id=i)
            for i in range(1, size + 1)
        ]
        for member in self.members:
            member.peers = self.members

    @property
    def connect_string(self) -> str:
        """A ZooKeeper connect string naming every member."""
        return ",".join(self.addresses)

    def leader(self) -> ZooKeeperServer:
        """The member that is currently the leader."""
        for member in self.members:
            if not member.running or member.paused:
                continue
            try:
                if member.mode() == "leader":
                    return member
            except OSError:
                continue
        raise LookupError("no ZooKeeper leader")
