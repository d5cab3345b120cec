"""DNS servers for tests: BIND 9 (authoritative, RFC 2136 updates with TSIG) and dnsmasq."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _binaries
from ._binaries import BackendNotInstalled
from ._ports import HOST, free_port, free_ports
from ._process import ManagedProcess
from .certificates import Certificates
from .dnswire import Answer, query


class _DnsServer(ManagedProcess):
    host: str
    port: int
    zone: str

    def query(self, name: str, rtype: str = "A", *, timeout: float = 2.0) -> Answer:
        """Ask this server one question (see :func:`pytest_sd.dnswire.query`)."""
        return query(self.host, self.port, name, rtype, timeout=timeout)

    def is_ready(self) -> bool:
        return self.query(self.zone, "SOA", timeout=0.5).rcode in ("NOERROR", "NXDOMAIN")


class BindServer(_DnsServer):
    """BIND 9 serving one primary zone that accepts dynamic updates signed with a TSIG key.

    Attributes: ``host``, ``port`` (UDP and TCP), ``address`` (``host:port``), ``zone``
    (``"sd.test."``), ``tsig_key_name``, ``tsig_algorithm`` (``"hmac-sha256"``),
    ``tsig_secret`` (base64, as tsig-keygen prints it), ``ttl`` (of the zone's records),
    ``data_dir``, ``log_path``. The zone's state (with the journal of updates) survives
    stop/start; ``start(wipe=True)`` starts from the initial zone. With
    ``minimal_responses=True`` answers carry no additional section (SRV answers come without
    their targets' addresses, which clients then look up).

    DNS over TLS (RFC 7858), queries and updates alike: ``tls_port`` (any client),
    ``mtls_port`` (clients with a certificate of the test CA only); ``certificates`` (see
    :class:`~pytest_sd.certificates.Certificates`, the server's for ``tls_server_name`` =
    ``"ns.<zone>"`` and for the IP address), ``ca_path``, ``client_cert_path`` and
    ``client_key_path``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        zone: str = "sd.test.",
        name: str = "named",
        minimal_responses: bool = False,
    ) -> None:
        super().__init__(name, data_dir)
        self.minimal_responses = minimal_responses
        self.binary = _binaries.named()
        keygen = _binaries.tsig_keygen()
        self.host = HOST
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        self.zone = zone if zone.endswith(".") else zone + "."
        self.ttl = 5
        self.tsig_key_name = "sd-test-key"
        self.tsig_algorithm = "hmac-sha256"
        key_text = subprocess.run(
            [str(keygen), "-a", self.tsig_algorithm, self.tsig_key_name],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        match = re.search(r'secret\s+"([^"]+)"', key_text)
        if match is None:
            raise RuntimeError(f"unexpected tsig-keygen output: {key_text!r}")
        self.tsig_secret = match.group(1)
        self.key_path = data_dir / "tsig.key"
        self.key_path.write_text(key_text)
        self.config_path = data_dir / "named.conf"
        self.zone_path = data_dir / f"{self.zone.rstrip('.')}.zone"
        self.tls_server_name = f"ns.{self.zone.rstrip('.')}"
        self.certificates = Certificates(
            data_dir / "tls", server_names=[self.tls_server_name], server_ips=[self.host]
        )
        self.ca_path = self.certificates.ca
        self.client_cert_path = self.certificates.client_cert
        self.client_key_path = self.certificates.client_key
        self.tls_port, self.mtls_port = free_ports(2)

    def config(self) -> str:
        """The named.conf written before each start."""
        d = self.data_dir
        minimal = "\n    minimal-responses yes;" if self.minimal_responses else ""
        certs = self.certificates
        files = f'cert-file "{certs.server_cert}"; key-file "{certs.server_key}";'
        tls = (
            f"tls server-tls {{ {files} }};\n"
            f'tls mutual-tls {{ {files} ca-file "{self.ca_path}"; }};\n'
        )
        listen_tls = (
            f"\n    listen-on port {self.tls_port} tls server-tls {{ {self.host}; }};"
            f"\n    listen-on port {self.mtls_port} tls mutual-tls {{ {self.host}; }};"
        )
        return f"""{tls}
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {self.port} {{ {self.host}; }};{listen_tls}
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};{minimal}
}};
controls {{ }};
include "{self.key_path}";
zone "{self.zone}" {{
    type primary;
    file "{self.zone_path}";
    allow-update {{ key "{self.tsig_key_name}"; }};
}};
"""

    def initial_zone(self) -> str:
        """The zone file a fresh (or wiped) server starts with."""
        return (
            f"$TTL {self.ttl}\n"
            f"@ IN SOA ns.{self.zone} admin.{self.zone} 1 60 60 600 {self.ttl}\n"
            f"@ IN NS ns.{self.zone}\n"
            f"ns IN A {self.host}\n"
        )

    def prepare(self) -> None:
        self.config_path.write_text(self.config())
        if not self.zone_path.exists():
            self.zone_path.write_text(self.initial_zone())

    def command(self) -> list[str]:
        return [str(self.binary), "-g", "-4", "-n", "1", "-c", str(self.config_path)]

    def state_paths(self) -> Iterable[Path]:
        return [self.zone_path, self.zone_path.with_name(self.zone_path.name + ".jnl")]

    def nsupdate(self, *commands: str, timeout: float = 10.0) -> None:
        """Change the zone as an operator does: ``nsupdate`` with the TSIG key, sending
        ``commands`` (such as ``"update delete web.sd.test. A"``) as one update.

        The ``nsupdate`` program (Debian: bind9-dnsutils) is found at ``$SD_NSUPDATE_BIN``,
        on ``PATH`` or in /usr/bin. Raises ``RuntimeError`` with its output when it fails.
        """
        binary = _nsupdate()
        script = "\n".join(
            [f"server {self.host} {self.port}", f"zone {self.zone}", *commands, "send", ""]
        )
        result = subprocess.run(
            [str(binary), "-k", str(self.key_path), "-t", str(max(1, int(timeout)))],
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout + 5,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"nsupdate failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                f"commands:\n{script}"
            )


def _nsupdate() -> Path:
    configured = os.environ.get("SD_NSUPDATE_BIN")
    found = configured or shutil.which("nsupdate") or "/usr/bin/nsupdate"
    if not os.access(found, os.X_OK):
        raise BackendNotInstalled("nsupdate (Debian: apt-get install bind9-dnsutils)", found)
    return Path(found)


@dataclass(frozen=True)
class SrvRecord:
    """An SRV record for dnsmasq: ``name`` like ``_web._tcp.sd.test``. A ``target`` of
    ``"."`` (or empty) is RFC 2782's "service not available" record (dnsmasq then serves
    ``0 0 1 .``, whatever the other fields)."""

    name: str
    target: str
    port: int
    priority: int = 0
    weight: int = 0


@dataclass(frozen=True)
class AddressRecord:
    """An A (IPv4) or AAAA (IPv6) record for dnsmasq. With ``additional=False`` it is
    answered only when asked (dnsmasq's ``address=``): SRV answers then carry no address for
    it in their additional section, and clients must look it up."""

    name: str
    address: str
    additional: bool = True


class DnsmasqServer(_DnsServer):
    """dnsmasq answering from records given by the test; unknown names under ``zone`` are
    NXDOMAIN and nothing is forwarded.

    Attributes: ``host``, ``port``, ``address``, ``zone`` (``"sd.test."``), ``ttl``,
    ``records``, ``data_dir``, ``log_path``. :meth:`set_records` replaces the records and
    restarts the server (dnsmasq reads them only at start).
    """

    start_timeout = 15.0

    def __init__(self, data_dir: Path, *, zone: str = "sd.test.", name: str = "dnsmasq") -> None:
        super().__init__(name, data_dir)
        self.binary = _binaries.dnsmasq()
        self.host = HOST
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        self.zone = zone if zone.endswith(".") else zone + "."
        self.ttl = 1
        self.records: tuple[SrvRecord | AddressRecord, ...] = ()
        self.config_path = data_dir / "dnsmasq.conf"

    def config(self) -> str:
        """The configuration file written before each start."""
        lines = [
            "no-resolv",
            "no-hosts",
            "no-poll",
            "bind-interfaces",
            f"listen-address={self.host}",
            f"port={self.port}",
            f"local=/{self.zone.rstrip('.')}/",
            f"local-ttl={self.ttl}",
            "log-queries",
            "log-facility=-",
            f"pid-file={self.data_dir / 'dnsmasq.pid'}",
        ]
        for record in self.records:
            if isinstance(record, SrvRecord) and not record.target.rstrip("."):
                lines.append(f"srv-host={record.name.rstrip('.')}")
            elif isinstance(record, SrvRecord):
                lines.append(
                    f"srv-host={record.name.rstrip('.')},{record.target.rstrip('.')},"
                    f"{record.port},{record.priority},{record.weight}"
                )
            elif record.additional:
                lines.append(f"host-record={record.name.rstrip('.')},{record.address}")
            else:
                lines.append(f"address=/{record.name.rstrip('.')}/{record.address}")
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.config_path.write_text(self.config())

    def command(self) -> list[str]:
        return [str(self.binary), "--keep-in-foreground", f"--conf-file={self.config_path}"]

    def set_records(self, records: Sequence[SrvRecord | AddressRecord]) -> None:
        """Serve exactly these records: (re)start the server with them and wait until ready."""
        self.records = tuple(records)
        if self.running:
            self.restart()
        else:
            self.start()
