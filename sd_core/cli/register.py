"""``sd register``: register an instance until interrupted, then deregister."""

from __future__ import annotations

from collections.abc import Sequence

import click

from sd_core._selection import registrar
from sd_core._url import parse_backend

from ._health import health_printer
from ._params import backend_options, parse_options, registration, registration_options
from ._signals import Interrupted, stop_on_signals, wait_for_signal

__all__ = ["register"]


@click.command()
@click.argument("backend", metavar="BACKEND_OR_URL")
@registration_options
@backend_options
def register(
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
) -> None:
    """Register an instance of a service until SIGINT or SIGTERM, then deregister.

    Changes of the registration's health (renewals failing, the backend losing it, its
    restore) are printed to stderr as they happen.
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
    name = parse_backend(backend).backend
    with stop_on_signals():
        announcer = registrar(backend, reg, **parse_options(options))
        announcer.on_health_change(health_printer(reg, announcer.backend_id))
        try:
            announcer.register()
            click.echo(
                f"registered {reg.service} {reg.address} (id {announcer.backend_id}) with {name}; "
                "Ctrl-C to deregister"
            )
            wait_for_signal()
        except Interrupted:
            pass
        finally:
            announcer.close()
    click.echo(f"deregistered {reg.service} {reg.address} (id {announcer.backend_id})")
