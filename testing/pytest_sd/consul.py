"""A Consul 1.8 server agent for tests (optionally with default-deny ACLs)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _binaries
from ._http import HttpResponse, request
from ._ports import HOST, free_ports
from ._process import ManagedProcess


class ConsulServer(ManagedProcess):
    """A single-node Consul server agent on 127.0.0.1.

    Attributes: ``host``, ``http_port``, ``dns_port``, ``url`` (HTTP API base), ``address``
    (``host:http_port``), ``datacenter``, ``node_name``, ``token`` (the management token when
    ACLs are on, else None), ``data_dir``, ``log_path``. ``start(wipe=True)`` starts with empty
    state (a new node that forgot every service and check).

    ``http_max_conns_per_client`` sets the agent's ``limits.http_max_conns_per_client`` (how
    many HTTP connections one client IP address may hold open; Consul's default is 200).
    """

    start_timeout = 60.0

    def __init__(
        self,
        data_dir: Path,
        *,
        acl: bool = False,
        name: str = "consul",
        http_max_conns_per_client: int | None = None,
    ) -> None:
        super().__init__(name, data_dir)
        self.binary = _binaries.consul()
        self.host = HOST
        (
            self.http_port,
            self.dns_port,
            self.serf_lan_port,
            self.serf_wan_port,
            self.server_port,
        ) = free_ports(5)
        self.url = f"http://{self.host}:{self.http_port}"
        self.address = f"{self.host}:{self.http_port}"
        self.datacenter = "dc1"
        self.node_name = f"sd-test-{name}"
        self.acl = acl
        self.http_max_conns_per_client = http_max_conns_per_client
        self.token: str | None = str(uuid.uuid4()) if acl else None
        self.config_path = data_dir / "consul.json"
        self.state_dir = data_dir / "state"

    def config(self) -> dict[str, Any]:
        """The agent configuration written before each start."""
        config: dict[str, Any] = {
            "datacenter": self.datacenter,
            "node_name": self.node_name,
            "data_dir": str(self.state_dir),
            "server": True,
            "bootstrap": True,
            "bind_addr": self.host,
            "client_addr": self.host,
            "advertise_addr": self.host,
            "ports": {
                "http": self.http_port,
                "dns": self.dns_port,
                "serf_lan": self.serf_lan_port,
                "serf_wan": self.serf_wan_port,
                "server": self.server_port,
                "grpc": -1,
                "https": -1,
            },
            "disable_update_check": True,
            "log_level": "INFO",
            "performance": {"raft_multiplier": 1},
        }
        if self.http_max_conns_per_client is not None:
            config["limits"] = {"http_max_conns_per_client": self.http_max_conns_per_client}
        if self.acl:
            config["acl"] = {
                "enabled": True,
                "default_policy": "deny",
                "down_policy": "extend-cache",
                "enable_token_persistence": True,
                "tokens": {"master": self.token, "agent": self.token},
            }
        return config

    def prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))

    def command(self) -> list[str]:
        return [str(self.binary), "agent", f"-config-file={self.config_path}"]

    def state_paths(self) -> Iterable[Path]:
        return [self.state_dir]

    def headers(self) -> dict[str, str]:
        """Request headers carrying the management token, if any."""
        return {"X-Consul-Token": self.token} if self.token else {}

    def api(
        self, method: str, path: str, body: Any = None, *, timeout: float = 5.0
    ) -> HttpResponse:
        """Call the HTTP API (``path`` like ``/v1/catalog/services``) with the management token."""
        return request(method, self.url + path, body, self.headers(), timeout=timeout)

    def is_ready(self) -> bool:
        leader = self.api("GET", "/v1/status/leader", timeout=1.0)
        if leader.status != 200 or not leader.json():
            return False
        node = self.api("GET", f"/v1/catalog/node/{self.node_name}", timeout=1.0)
        return node.status == 200 and bool(node.json())
