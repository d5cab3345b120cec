"""A Spring Cloud Netflix Eureka server for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _binaries
from ._http import HttpResponse, request
from ._ports import HOST, free_port
from ._process import ManagedProcess

TEST_PROPERTIES = {
    "server.address": HOST,
    "eureka.client.register-with-eureka": "false",
    "eureka.client.fetch-registry": "false",
    "eureka.server.enable-self-preservation": "false",
    "eureka.server.use-read-only-response-cache": "false",
    "eureka.server.response-cache-update-interval-ms": "1000",
    "eureka.server.eviction-interval-timer-in-ms": "1000",
    "eureka.server.wait-time-in-ms-when-sync-empty": "0",
}


class EurekaServer(ManagedProcess):
    """A standalone Eureka server (in-memory registry) on 127.0.0.1.

    Attributes: ``host``, ``port``, ``address``, ``base_url`` (``http://host:port``), ``url``
    (the REST base ``http://host:port/eureka``, so ``url + "/apps"``), ``data_dir``,
    ``log_path``. It neither registers nor fetches, never enters self-preservation, and evicts
    expired leases within about a second. A restart forgets every registration.
    """

    start_timeout = 180.0
    stop_timeout = 20.0

    def __init__(self, data_dir: Path, *, name: str = "eureka") -> None:
        super().__init__(name, data_dir)
        self.java = _binaries.java()
        self.jar = _binaries.eureka_jar()
        self.host = HOST
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        self.base_url = f"http://{self.host}:{self.port}"
        self.url = f"{self.base_url}/eureka"
        self.tmp_dir = data_dir / "tmp"

    def prepare(self) -> None:
        self.tmp_dir.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.java),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={self.tmp_dir}",
            "-jar",
            str(self.jar),
            f"--server.port={self.port}",
            *(f"--{key}={value}" for key, value in TEST_PROPERTIES.items()),
        ]

    def api(self, method: str, path: str, body: Any = None) -> HttpResponse:
        """Call the REST API (``path`` like ``/apps``) asking for JSON."""
        return request(method, self.url + path, body, {"Accept": "application/json"})

    def is_ready(self) -> bool:
        return self.api("GET", "/apps").status == 200
