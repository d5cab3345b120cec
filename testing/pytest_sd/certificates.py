"""A test certificate authority and the certificates that TLS test servers and clients use,
made with the ``openssl`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ._binaries import BackendNotInstalled

__all__ = ["Certificates"]

_NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class Certificates:
    """A CA, a server certificate and a client certificate signed by it, and another CA that
    signed neither, made in ``folder`` (P-256 keys, valid a week).

    The server certificate names ``server_names`` (DNS) and ``server_ips`` (IP addresses) and
    serves both server and client authentication (cluster peers present it to each other).
    Attributes, paths of PEM files: ``ca``, ``server_cert``, ``server_key``, ``client_cert``,
    ``client_key``, ``other_ca``. The ``openssl`` command is ``$SD_OPENSSL_BIN`` or the one on
    the ``PATH``; without it, :class:`~pytest_sd._binaries.BackendNotInstalled`.
    """

    def __init__(
        self,
        folder: Path,
        *,
        server_names: Sequence[str] = ("localhost",),
        server_ips: Sequence[str] = ("127.0.0.1", "::1"),
    ) -> None:
        found = os.environ.get("SD_OPENSSL_BIN") or shutil.which("openssl")
        if not found:
            raise BackendNotInstalled("openssl (Debian: apt-get install openssl)", "PATH")
        openssl: str = found
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca, self.other_ca = folder / "ca.pem", folder / "other-ca.pem"
        self.server_cert, self.server_key = folder / "server.pem", folder / "server.key"
        self.client_cert, self.client_key = folder / "client.pem", folder / "client.key"
        ca_key = folder / "ca.key"

        def run(*args: str | Path) -> None:
            command = [openssl, *(str(arg) for arg in args)]
            subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=30)

        for cert, key, name in (
            (self.ca, ca_key, "pytest-sd test CA"),
            (self.other_ca, folder / "other-ca.key", "another CA"),
        ):
            subject = ["-subj", f"/CN={name}", "-days", "7"]
            run("req", "-x509", *_NEW_KEY, "-keyout", key, "-out", cert, *subject)
        alt_names = [f"DNS:{name}" for name in server_names] + [f"IP:{ip}" for ip in server_ips]
        for cert, key, name, extensions in (
            (
                self.server_cert,
                self.server_key,
                server_names[0] if server_names else "server",
                f"subjectAltName={','.join(alt_names)}\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            (self.client_cert, self.client_key, "sd-client", "extendedKeyUsage=clientAuth\n"),
        ):
            stem = cert.stem
            request, extfile = folder / f"{stem}.csr", folder / f"{stem}.ext"
            extfile.write_text(extensions)
            run("req", *_NEW_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
            signing: list[str | Path] = [
                "-CA",
                self.ca,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-extfile",
                extfile,
            ]
            run("x509", "-req", "-in", request, *signing, "-out", cert, "-days", "7")

    def __repr__(self) -> str:
        return f"Certificates({str(self.folder)!r})"
