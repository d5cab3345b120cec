"""Locate the backend servers installed by ``scripts/install-backends``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL_COMMAND = "bash scripts/install-backends"


class BackendNotInstalled(Exception):
    """A server that a fixture needs is not installed on this machine."""

    def __init__(self, what: str, looked_at: str) -> None:
        super().__init__(
            f"{what} is not installed (looked at {looked_at}); "
            f"install the test backends with: {INSTALL_COMMAND}"
        )


def backends_dir() -> Path:
    """The folder the install script fills: ``$SD_BACKENDS_DIR`` or ~/.cache/sd-core/backends."""
    configured = os.environ.get("SD_BACKENDS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sd-core" / "backends"


def _first_executable(what: str, *candidates: Path | None) -> Path:
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
    """The classpath that runs ZooKeeper 3.8 from Debian's jars (their manifest lists the rest)."""
    jars = [Path("/usr/share/java/zookeeper.jar"), Path("/usr/share/java/slf4j-simple.jar")]
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
    """The Eureka server jar built by the install script."""
    jar = backends_dir() / "eureka/current/eureka-server.jar"
    if not jar.is_file():
        raise BackendNotInstalled("The Eureka server", str(jar))
    return jar
