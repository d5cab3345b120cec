"""``sd run``: run a command and keep it registered while it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import click

from sd_core._contracts import Registrar
from sd_core._selection import registrar

from ._health import health_printer
from ._params import backend_options, parse_options, registration, registration_options
from ._readiness import Readiness, ReadyUrl
from ._signals import Forwarder, forwarding, parent_death_signal

__all__ = ["run"]

_FIRST_PAUSE = 0.02
_MAX_PAUSE = 0.25
_STOP_GRACE = 10.0


def _start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """COMMAND in its own process group, sent SIGTERM if sd dies (Linux)."""
    # The preexec_fn takes no lock and imports nothing (see parent_death_signal), so other
    # threads cannot deadlock it; it runs from the main thread, whose end is sd's end.
    in_child = parent_death_signal()
    return subprocess.Popen(command, process_group=0, preexec_fn=in_child)  # noqa: PLW1509


def _signaller(child: subprocess.Popen[bytes]) -> Callable[[int], None]:
    """Send a signal to the child's process group (until the child is reaped)."""

    def send(signum: int) -> None:
        # Once reaped, the child's pid (its group's id) may name someone else's group.
        if child.returncode is None:
            # Called from a signal handler: never raise. ESRCH: the group is gone.
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signum)

    return send


def _wait_ready(
    child: subprocess.Popen[bytes],
    readiness: Readiness,
    timeout: float,
    signals: Forwarder,
    name: str,
) -> bool:
    """True once the command is ready; False when it exited or was asked to stop first."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while child.poll() is None and not signals.stopping:
        reason = readiness.check(child.pid, deadline)
        if reason is None:
            return not signals.stopping  # asked to stop while being checked
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise click.ClickException(f"{name} was not ready within {timeout:g} s: {reason}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(min(pause, remaining))  # a pause that ends when the child exits
        pause = min(pause * 1.5, _MAX_PAUSE)
    return False


def _stop(child: subprocess.Popen[bytes], send: Callable[[int], None]) -> None:
    """Stop the child's process group: SIGTERM, then SIGKILL after a grace period."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            return
        send(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(_STOP_GRACE)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _note(message: str) -> None:
    click.echo(f"sd: {message}", err=True)


def _ready_url(ctx: click.Context, param: click.Parameter, value: str | None) -> ReadyUrl | None:
    if value is None:
        return None
    try:
        return ReadyUrl.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("backend", metavar="BACKEND_OR_URL")
@registration_options
@backend_options
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds COMMAND has to become ready; it is then stopped and sd exits with 1.",
)
@click.option(
    "--ready-url",
    metavar="URL",
    callback=_ready_url,
    help="Ready also needs an HTTP GET of URL to answer 2xx or 3xx.",
)
@click.option(
    "--check-owner/--no-check-owner",
    default=True,
    show_default=True,
    help="Ready needs the sockets listening on PORT to be COMMAND's (Linux).",
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
    ready_url: ReadyUrl | None,
    check_owner: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND; register HOST:PORT once COMMAND is ready; deregister when it exits.

    \b
    COMMAND is ready when, checked every 20-250 ms:
    - on Linux (unless --no-check-owner; elsewhere not checked), the TCP
      sockets listening on PORT that would receive connections to HOST
      belong to COMMAND or its descendants (while another process holds
      the port, sd says once which and keeps waiting);
    - HOST:PORT accepts a TCP connection;
    - with --ready-url, a GET of URL answers 2xx or 3xx (redirects are not
      followed).

    \b
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed to
    COMMAND's process group (COMMAND runs in its own); sd keeps running until
    COMMAND exits, then deregisters and exits with its status (128 + N when
    signal N ended it). After SIGINT or SIGTERM, a COMMAND not yet ready is
    not registered. On Linux, COMMAND gets SIGTERM if sd itself dies.
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
    readiness = Readiness(reg.host, reg.port, url=ready_url, check_owner=check_owner, say=_note)
    # Built before the child starts, so that a bad backend or option fails without running it.
    announcer: Registrar = registrar(backend, reg, **parse_options(options))
    announcer.on_health_change(health_printer(reg, announcer.backend_id))
    with forwarding() as signals:
        child = _start(command)
        send = _signaller(child)
        signals.to(send)
        registered = False
        try:
            if _wait_ready(child, readiness, ready_timeout, signals, command[0]):
                announcer.register()
                registered = True
                _note(f"registered {reg.service} {reg.address} (id {announcer.backend_id})")
            # sd supervises until the child exits, whatever signals it passed on.
            child.wait()
        finally:
            _stop(child, send)  # when something above raised
            announcer.close()
            if registered:
                _note(f"deregistered {reg.service} {reg.address} (id {announcer.backend_id})")
    status = _status(child.returncode)
    if not registered and not signals.stopping:
        _note(f"error: {command[0]} exited with status {status} before {reg.address} was ready")
        sys.exit(status or 1)
    sys.exit(status)
