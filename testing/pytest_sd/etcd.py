"""etcd 3.4 / 3.5 servers and clusters for tests."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _binaries
from ._cluster import Cluster
from ._http import HttpResponse, request
from ._ports import HOST, free_ports
from ._process import ManagedProcess, ServerError, wait_until
from .certificates import Certificates


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def prefix_range_end(prefix: str) -> str:
    """The etcd ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return "\0"
    raw[-1] += 1
    return raw.decode("latin-1")


class EtcdMember(ManagedProcess):
    """One etcd member on 127.0.0.1.

    Attributes: ``version`` ("3.4" or "3.5"), ``host``, ``client_port``, ``peer_port``,
    ``url`` (client URL), ``address`` (``host:client_port``), ``data_dir``, ``log_path``.
    Stopping or killing a member keeps its data; it rejoins its cluster when started again.
    """

    def __init__(self, name: str, data_dir: Path, version: str = "3.5") -> None:
        super().__init__(name, data_dir)
        self.binary = _binaries.etcd(version)
        self.version = version
        self.host = HOST
        self.client_port, self.peer_port = free_ports(2)
        self.url = f"http://{self.host}:{self.client_port}"
        self.address = f"{self.host}:{self.client_port}"
        self.peer_url = f"http://{self.host}:{self.peer_port}"
        self.initial_cluster = f"{name}={self.peer_url}"
        self.cluster_token = f"sd-test-{name}"
        self.state_dir = data_dir / "state"
        # Requests made by the helpers below authenticate with these when set.
        self.auth_user: str | None = None
        self.auth_password: str | None = None

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--name={self.name}",
            f"--data-dir={self.state_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-token={self.cluster_token}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    def state_paths(self) -> Iterable[Path]:
        return [self.state_dir]

    def is_ready(self) -> bool:
        resp = request("GET", self.url + "/health", timeout=1.0)
        return resp.status == 200 and resp.json().get("health") == "true"

    # -- a minimal client over the JSON gateway, for fixtures and smoke tests ----------------
    def call(
        self, path: str, body: dict[str, Any], *, token: str | None = None, timeout: float = 5.0
    ) -> HttpResponse:
        """POST to the v3 JSON gateway (``path`` like ``/v3/kv/put``)."""
        if token is None and self.auth_user is not None and self.auth_password is not None:
            token = self.authenticate(self.auth_user, self.auth_password)
        headers = {"Authorization": token} if token else {}
        return request("POST", self.url + path, body, headers, timeout=timeout)

    def authenticate(self, user: str, password: str) -> str:
        """Return an auth token for ``user``."""
        resp = request(
            "POST", self.url + "/v3/auth/authenticate", {"name": user, "password": password}
        )
        if resp.status != 200:
            raise ServerError(f"etcd authentication of {user!r} failed: {resp}")
        return str(resp.json()["token"])

    def put(self, key: str, value: str, *, token: str | None = None) -> HttpResponse:
        """Put one key."""
        return self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, token=token)

    def get(self, key: str, *, token: str | None = None) -> str | None:
        """Read one key's value, or None when it is absent."""
        resp = self.call("/v3/kv/range", {"key": _b64(key)}, token=token)
        if resp.status != 200:
            raise ServerError(f"etcd range of {key!r} failed: {resp}")
        kvs = resp.json().get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


class EtcdServer(EtcdMember):
    """A single-member etcd cluster (see :class:`EtcdMember` for the attributes).

    With ``auth=True`` authentication is on: ``root_user`` / ``root_password`` (role root) and
    ``user`` / ``password`` limited to read-write keys under ``user_prefix``.
    """

    def __init__(
        self, data_dir: Path, version: str = "3.5", *, auth: bool = False, name: str = "etcd"
    ) -> None:
        super().__init__(name, data_dir, version)
        self.auth = auth
        self.root_user = "root"
        self.root_password = secrets.token_hex(8)
        self.user = "sd-user"
        self.password = secrets.token_hex(8)
        self.user_prefix = "/sd-user/"
        self._auth_enabled = False

    @property
    def endpoints(self) -> list[str]:
        """Client URLs (one)."""
        return [self.url]

    def start(self, *, wipe: bool = False, wait: bool = True) -> None:
        super().start(wipe=wipe, wait=wait)
        if wipe:
            self._auth_enabled = False
        if self.auth and wait and not self._auth_enabled:
            self._enable_auth()

    def _enable_auth(self) -> None:
        steps: list[tuple[str, dict[str, Any]]] = [
            ("/v3/auth/user/add", {"name": self.root_user, "password": self.root_password}),
            ("/v3/auth/user/grant", {"user": self.root_user, "role": "root"}),
            ("/v3/auth/role/add", {"name": "sd-limited"}),
            (
                "/v3/auth/role/grant",
                {
                    "name": "sd-limited",
                    "perm": {
                        "permType": "READWRITE",
                        "key": _b64(self.user_prefix),
                        "range_end": _b64(prefix_range_end(self.user_prefix)),
                    },
                },
            ),
            ("/v3/auth/user/add", {"name": self.user, "password": self.password}),
            ("/v3/auth/user/grant", {"user": self.user, "role": "sd-limited"}),
            ("/v3/auth/enable", {}),
        ]
        for path, body in steps:
            resp = request("POST", self.url + path, body)
            if resp.status != 200:
                raise ServerError(f"etcd auth setup {path} failed: {resp}")
        self._auth_enabled = True
        self.auth_user, self.auth_password = self.root_user, self.root_password


class EtcdTLSServer(EtcdServer):
    """A single etcd server that serves clients over TLS and asks them for a certificate
    signed by its CA (``--client-cert-auth``), at ``tls_address`` (``host:port``) /
    ``tls_url``; ``certificates`` are its :class:`Certificates`. It also listens in plain
    HTTP at ``address`` / ``url``, for the readiness check and the helpers (:meth:`put`…)."""

    def __init__(self, data_dir: Path, version: str = "3.5", *, name: str = "etcd-tls") -> None:
        super().__init__(data_dir, version, name=name)
        self.certificates = Certificates(data_dir / "tls")
        (self.tls_port,) = free_ports(1)
        self.tls_address = f"{self.host}:{self.tls_port}"
        self.tls_url = f"https://{self.tls_address}"

    def command(self) -> list[str]:
        certs = self.certificates
        command = [arg for arg in super().command() if not arg.startswith("--listen-client-urls")]
        return [
            *command,
            f"--listen-client-urls={self.url},{self.tls_url}",
            f"--cert-file={certs.server_cert}",
            f"--key-file={certs.server_key}",
            f"--trusted-ca-file={certs.ca}",
            "--client-cert-auth",
        ]


class EtcdCluster(Cluster[EtcdMember]):
    """A cluster of etcd members on 127.0.0.1.

    Attributes: ``members`` (:class:`EtcdMember`, each with the fault handles), ``endpoints``
    (client URLs), ``addresses`` (``host:port``), ``version``.
    """

    start_timeout = 60.0

    def __init__(self, data_dir: Path, size: int = 3, version: str = "3.5") -> None:
        self.version = version
        self.data_dir = data_dir
        self.members = [
            EtcdMember(f"etcd{i}", data_dir / f"etcd{i}", version) for i in range(1, size + 1)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.initial_cluster = initial
            member.cluster_token = "sd-test-cluster"

    @property
    def endpoints(self) -> list[str]:
        """The members' client URLs."""
        return [m.url for m in self.members]

    def leader(self) -> EtcdMember:
        """The member that is currently the leader."""
        found: list[EtcdMember] = []

        def check() -> bool:
            for member in self.members:
                if not member.running or member.paused:
                    continue
                status = member.call("/v3/maintenance/status", {}, timeout=1.0).json()
                if status.get("leader") and status.get("leader") == status["header"]["member_id"]:
                    found.append(member)
                    return True
            return False

        wait_until(check, timeout=15.0, what="an etcd leader")
        return found[0]
