"""``sd run``: run a command and keep it registered while it serves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import click

from sd_core._contracts import Registrar
from sd_core._instance import Registration
from sd_core._selection import registrar

from ._params import backend_options, parse_options, registration, registration_options
from ._signals import forwarding

__all__ = ["run"]

_POLL = 0.05
_STOP_GRACE = 10.0


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_ready(
    child: subprocess.Popen[bytes], reg: Registration, timeout: float, seen: list[int]
) -> bool:
    """True once the port accepts connections; False when the child exited or we were signalled."""
    deadline = time.monotonic() + timeout
    while child.poll() is None and not seen:
        if _accepts(reg.host, reg.port):
            return True
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"{reg.address} did not accept connections within {timeout:g} s"
            )
        time.sleep(_POLL)
    return False


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _note(message: str) -> None:
    click.echo(f"sd: {message}", err=True)


@click.command()
@click.argument("backend", metavar="BACKEND_OR_URL")
@registration_options
@backend_options
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the port to accept connections.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    *,
    backend: str,
    service: str | None,
    port: int,
    host: str,
    instance_id: str,
    tags: Sequence[str],
    meta: Sequence[str],
    ttl: float,
    weight: int,
    zone: str,
    options: tuple[str, ...],
    ready_timeout: float,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND; register it once HOST:PORT accepts connections, deregister when it exits.

    SIGINT and SIGTERM are passed to COMMAND, which runs in its own process group; sd exits
    with its status (128 + N when signal N ended it).
    """
    reg = registration(
        backend,
        service=service,
        port=port,
        host=host,
        instance_id=instance_id,
        tags=tags,
        meta=meta,
        ttl=ttl,
        weight=weight,
        zone=zone,
    )
    # Built before the child starts, so that a bad backend or option fails without running it.
    announcer: Registrar = registrar(backend, reg, **parse_options(options))
    child = subprocess.Popen(command, process_group=0)
    try:
        with forwarding(child.send_signal) as seen:
            if _wait_ready(child, reg, ready_timeout, seen):
                announcer.register()
                _note(f"registered {reg.service} {reg.address} (id {reg.id})")
                try:
                    child.wait()
                finally:
                    announcer.close()
                    _note(f"deregistered {reg.service} {reg.address} (id {reg.id})")
            else:
                child.wait()
                if not seen:
                    status = _status(child.returncode)
                    _note(
                        f"error: {command[0]} exited with status {status} before "
                        f"{reg.address} accepted connections"
                    )
                    sys.exit(status or 1)
    finally:
        _stop(child)
        announcer.close()
    sys.exit(_status(child.returncode))
