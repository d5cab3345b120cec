"""Locate the backend servers the fixtures run.

Each server is looked for, in order: at the path its environment variable names (for
example ``SD_CONSUL_BIN``), where ``scripts/install-backends`` of the sd repository puts it
(under ``$SD_BACKENDS_DIR``, by default ``~/.cache/sd-core/backends``), and for the servers
that come as Debian packages, where the package installs it and on ``PATH``. A server that is
found nowhere raises :class:`BackendNotInstalled`, whose message says how to get it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL_COMMAND = "sudo bash scripts/install-backends"
"""Installs every test server, in a checkout of the sd repository (Debian bookworm)."""

ENVIRONMENT = {
    "Consul": "SD_CONSUL_BIN",
    "etcd 3.4": "SD_ETCD_3_4_BIN",
    "etcd 3.5": "SD_ETCD_3_5_BIN",
    "Java": "SD_JAVA_BIN",
    "ZooKeeper": "SD_ZOOKEEPER_CLASSPATH",
    "BIND 9 (named)": "SD_NAMED_BIN",
    "BIND 9 (tsig-keygen)": "SD_TSIG_KEYGEN_BIN",
    "dnsmasq": "SD_DNSMASQ_BIN",
    "The Eureka server": "SD_EUREKA_JAR",
}
"""The environment variable that points to each server (a binary, a jar, a classpath)."""

_HOW = {
    "Consul": "Download a Consul 1.8 release (https://releases.hashicorp.com/consul/) or take "
    "usr/bin/consul out of Debian bullseye's consul package; then set",
    "etcd 3.4": "Download an etcd v3.4 release (https://github.com/etcd-io/etcd/releases) or "
    "take usr/bin/etcd out of Debian bookworm's etcd-server package; then set",
    "etcd 3.5": "Download an etcd v3.5 release (https://github.com/etcd-io/etcd/releases) or "
    "take usr/bin/etcd out of Debian trixie's etcd-server package; then set",
    "Java": "Install a Java runtime, 17 or newer (Debian: apt-get install "
    "default-jre-headless), or set",
    "ZooKeeper": "Install ZooKeeper 3.8 and an SLF4J binding (Debian: apt-get install "
    "zookeeper libslf4j-java), or set",
    "BIND 9 (named)": "Install BIND 9 (Debian: apt-get install bind9; no daemon needs to run), "
    "or set",
    "BIND 9 (tsig-keygen)": "Install BIND 9's tools (Debian: apt-get install bind9-utils), or set",
    "dnsmasq": "Install dnsmasq (Debian: apt-get install dnsmasq-base), or set",
    "The Eureka server": "Build it from testing/eureka-server of the sd repository with Java 17 "
    "and Maven (mvn package); then set",
}
"""How to get each server; the sentence ends with its environment variable."""


class BackendNotInstalled(Exception):
    """A server that a fixture needs is not installed on this machine."""

    def __init__(self, what: str, looked_at: str) -> None:
        self.what = what
        self.looked_at = looked_at
        variable = ENVIRONMENT.get(what)
        if variable is None:
            how = f"Install {what}"
        elif variable.endswith("CLASSPATH"):
            how = f"{_HOW[what]} {variable} to its classpath (jars joined with ':')"
        else:
            how = f"{_HOW[what]} {variable} to its path"
        super().__init__(
            f"{what} is not installed (looked at {looked_at}). {how}. In a checkout of the "
            f"sd repository, {INSTALL_COMMAND} installs every test server."
        )


def backends_dir() -> Path:
    """The folder the install script fills: ``$SD_BACKENDS_DIR`` or ~/.cache/sd-core/backends."""
    configured = os.environ.get("SD_BACKENDS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sd-core" / "backends"


def _configured(what: str) -> Path | None:
    variable = ENVIRONMENT.get(what)
    value = os.environ.get(variable, "") if variable else ""
    return Path(value).expanduser() if value else None


def _first_executable(what: str, *candidates: Path | None) -> Path:
    configured = _configured(what)
    if configured is not None:
        # Named explicitly: that one or nothing (a fallback would hide a wrong setting).
        candidates = (configured,)
    found = [c for c in candidates if c is not None]
    for candidate in found:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BackendNotInstalled(what, ", ".join(str(c) for c in found) or "PATH")


def _on_path(name: str) -> Path | None:
    where = shutil.which(name)
    return Path(where) if where else None


def consul() -> Path:
    """The Consul 1.8 binary."""
    return _first_executable("Consul", backends_dir() / "consul/usr/bin/consul")


def etcd(version: str) -> Path:
    """The etcd server binary of a minor version: ``"3.4"`` or ``"3.5"``."""
    return _first_executable(f"etcd {version}", backends_dir() / f"etcd-{version}/usr/bin/etcd")


def java() -> Path:
    """The Java runtime used for ZooKeeper and Eureka."""
    return _first_executable("Java", _on_path("java"), Path("/usr/bin/java"))


def zookeeper_classpath() -> str:
    """The classpath that runs ZooKeeper 3.8 (by default Debian's jars, whose manifest lists
    the rest)."""
    configured = os.environ.get(ENVIRONMENT["ZooKeeper"], "")
    jars = (
        [Path(part).expanduser() for part in configured.split(":") if part]
        if configured
        else [Path("/usr/share/java/zookeeper.jar"), Path("/usr/share/java/slf4j-simple.jar")]
    )
    for jar in jars:
        if not jar.is_file():
            raise BackendNotInstalled("ZooKeeper", str(jar))
    return ":".join(str(jar) for jar in jars)


def named() -> Path:
    """BIND's ``named``."""
    return _first_executable("BIND 9 (named)", Path("/usr/sbin/named"), _on_path("named"))


def tsig_keygen() -> Path:
    """BIND's ``tsig-keygen``."""
    return _first_executable(
        "BIND 9 (tsig-keygen)", Path("/usr/sbin/tsig-keygen"), _on_path("tsig-keygen")
    )


def dnsmasq() -> Path:
    """The ``dnsmasq`` binary."""
    return _first_executable("dnsmasq", Path("/usr/sbin/dnsmasq"), _on_path("dnsmasq"))


def eureka_jar() -> Path:
    """The Eureka server jar (built by the install script, or named by ``SD_EUREKA_JAR``)."""
    jar = _configured("The Eureka server") or backends_dir() / "eureka/current/eureka-server.jar"
    if not jar.is_file():
        raise BackendNotInstalled("The Eureka server", str(jar))
    return jar
