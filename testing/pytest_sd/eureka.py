"""A Spring Cloud Netflix Eureka server for tests, with HTTP basic auth, and one that serves
HTTPS only and asks clients for a certificate."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import shutil
import ssl
from pathlib import Path
from typing import Any

from . import _binaries
from ._http import HttpResponse, request
from ._ports import HOST, free_port
from ._process import ManagedProcess, ServerError
from .certificates import Certificates

__all__ = ["SOURCE", "USERNAME", "EurekaServer", "EurekaTLSServer", "server_jar"]

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

USERNAME = "sd"
"""The user of a server with basic auth."""

SOURCE = Path(__file__).resolve().parents[1] / "eureka-server"
"""The server's Maven project, in a checkout of the sd repository (absent from an installed
pytest-sd)."""

JAR = "eureka-server.jar"


def _install_hash(source: Path) -> str:
    """The key ``scripts/install-backends`` files its build of ``source`` under: the first 16
    hex digits of the sha256 of ``sha256sum``'s lines for pom.xml and every file under src/,
    in byte order of their paths."""
    files = [source / "pom.xml", *(p for p in (source / "src").rglob("*") if p.is_file())]
    names = sorted((str(p.relative_to(source)) for p in files), key=os.fsencode)
    lines = "".join(
        f"{hashlib.sha256((source / name).read_bytes()).hexdigest()}  {name}\n" for name in names
    )
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def server_jar() -> Path:
    """The Eureka server jar to run.

    ``SD_EUREKA_JAR`` when it is set. In a checkout of the sd repository, the jar built from
    its ``testing/eureka-server`` as it is now: the install script's build of these sources
    (``$SD_BACKENDS_DIR/eureka/<hash>/``), else a Maven build of them, cached (see
    :func:`pytest_sd.interop.build_maven`). ``eureka/current`` names the jar of whichever
    checkout ran the install script last, which may lack what the fixtures rely on (basic
    auth); it is used only where neither is possible (an installed pytest-sd, no Maven).
    """
    if (
        os.environ.get(_binaries.ENVIRONMENT["The Eureka server"])
        or not (SOURCE / "pom.xml").is_file()
    ):
        return _binaries.eureka_jar()
    built = _binaries.backends_dir() / "eureka" / _install_hash(SOURCE) / JAR
    if built.is_file():
        return built
    if shutil.which("mvn") is None:
        return _binaries.eureka_jar()
    from .interop import build_maven  # noqa: PLC0415 - imports pytest, for its skip

    return build_maven(SOURCE, JAR)


class EurekaServer(ManagedProcess):
    """A standalone Eureka server (in-memory registry) on 127.0.0.1.

    Attributes: ``host``, ``port``, ``address``, ``base_url`` (``http://host:port``), ``url``
    (the REST base ``http://host:port/eureka``, so ``url + "/apps"``), ``data_dir``,
    ``log_path``, ``jar``. It neither registers nor fetches, never enters self-preservation,
    and evicts expired leases within about a second. A restart forgets every registration.

    With ``auth`` (the default) every path asks for HTTP basic auth as ``username`` /
    ``password`` (a fresh password unless one is given); ``credentials_url`` is ``url`` with
    them in it, as Spring's ``defaultZone`` takes them. Once ready, the server must refuse
    an anonymous request: a jar built from older sources, which serves everyone, fails to
    start with a message saying so. Without ``auth``, ``username`` and ``password`` are None
    and anyone is served.
    """

    start_timeout = 180.0
    stop_timeout = 20.0
    scheme = "http"

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "eureka",
        auth: bool = True,
        password: str | None = None,
    ) -> None:
        super().__init__(name, data_dir)
        self.java = _binaries.java()
        self.jar = server_jar()
        self.host = HOST
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        self.base_url = f"{self.scheme}://{self.host}:{self.port}"
        self.url = f"{self.base_url}/eureka"
        self.tmp_dir = data_dir / "tmp"
        self.username: str | None = USERNAME if auth else None
        self.password: str | None = (password or secrets.token_urlsafe(12)) if auth else None

    @property
    def credentials_url(self) -> str:
        """``url`` with the user and password in it (``url`` itself without auth)."""
        if self.username is None or self.password is None:
            return self.url
        return f"{self.scheme}://{self.username}:{self.password}@{self.address}/eureka"

    def prepare(self) -> None:
        self.tmp_dir.mkdir(exist_ok=True)

    def command(self) -> list[str]:
        if self.username is not None and self.password is not None:
            auth = [
                "--sd.auth.enabled=true",
                f"--spring.security.user.name={self.username}",
                f"--spring.security.user.password={self.password}",
            ]
        else:
            auth = ["--sd.auth.enabled=false"]
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
            *auth,
        ]

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> HttpResponse:
        """Call the REST API (``path`` like ``/apps``) asking for JSON, authenticated unless
        ``auth`` is false."""
        headers = {"Accept": "application/json"}
        if auth and self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return self._request(method, path, body, headers)

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> HttpResponse:
        return request(method, self.url + path, body, headers)

    def is_ready(self) -> bool:
        return self.api("GET", "/apps").status == 200

    def wait_ready(self, timeout: float | None = None) -> None:
        super().wait_ready(timeout)
        if self.username is None:
            return
        anonymous = self.api("GET", "/apps", auth=False).status
        if anonymous != 401:
            raise ServerError(
                f"{self.name}: {self.jar} answered an anonymous GET /eureka/apps with "
                f"{anonymous}, not 401: it was built from older sources of "
                f"testing/eureka-server (without basic auth). Rebuild it "
                f"({_binaries.INSTALL_COMMAND}), or set SD_EUREKA_JAR to a current build."
            )


class EurekaTLSServer(EurekaServer):
    """A :class:`EurekaServer` that serves HTTPS only (``url`` is ``https://…/eureka``) and
    asks every client for a certificate signed by its CA (``server.ssl.client-auth=need``),
    behind basic auth as usual. ``certificates`` are its
    :class:`~pytest_sd.certificates.Certificates` (``ca``, ``client_cert``, ``client_key``,
    ``other_ca``…); :meth:`api` presents the client certificate."""

    scheme = "https"

    def __init__(self, data_dir: Path, *, name: str = "eureka-tls", auth: bool = True) -> None:
        self.certificates = Certificates(data_dir / "tls")
        super().__init__(data_dir, name=name, auth=auth)

    def command(self) -> list[str]:
        certs = self.certificates
        return [
            *super().command(),
            "--server.ssl.enabled=true",
            f"--server.ssl.certificate=file:{certs.server_cert}",
            f"--server.ssl.certificate-private-key=file:{certs.server_key}",
            f"--server.ssl.trust-certificate=file:{certs.ca}",
            "--server.ssl.client-auth=need",
        ]

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> HttpResponse:
        certs = self.certificates
        context = ssl.create_default_context(cafile=str(certs.ca))
        context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        connection = http.client.HTTPSConnection(self.host, self.port, context=context, timeout=5)
        try:
            connection.request(method, "/eureka" + path, body=payload, headers=headers)
            response = connection.getresponse()
            return HttpResponse(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()
