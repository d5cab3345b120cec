"""``sd resolve``: print the current instances of a service once."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.console import Console

from sd_core._event import Event
from sd_core._selection import instancer
from sd_core._url import parse_backend

from ._params import backend_options, parse_options
from ._render import error_text, instance_json, instances_table

__all__ = ["resolve"]


def _first_answer(
    backend: str, service: str | None, options: dict[str, object], timeout: float
) -> Event | None:
    """The first good event, else the last error, else None if nothing came in time."""
    deadline = time.monotonic() + timeout
    last: Event | None = None
    source = instancer(backend, service, **options)
    try:
        with source.subscribe() as sub:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    last = sub.get(timeout=remaining)
                except (TimeoutError, StopIteration):
                    break
                if last.ok:
                    break
    finally:
        source.stop()
    return last


@click.command()
@click.argument("backend", metavar="BACKEND_OR_URL")
@click.argument("service", required=False)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the backend's answer.",
)
def resolve(
    *, backend: str, service: str | None, options: tuple[str, ...], as_json: bool, timeout: float
) -> None:
    """Print the current instances of SERVICE and exit (status 1 when none or on error)."""
    event = _first_answer(backend, service, dict(parse_options(options)), timeout)
    label = service or parse_backend(backend).service or "the service"
    if event is None:
        click.echo(f"sd: error: no answer from the backend within {timeout:g} s", err=True)
        sys.exit(1)
    if event.error is not None:
        if as_json:
            click.echo(json.dumps({"error": error_text(event.error)}))
        click.echo(f"sd: error: {error_text(event.error)}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"instances": [instance_json(i) for i in event.instances]}))
    elif event.instances:
        Console(highlight=False, emoji=False).print(instances_table(event.instances))
    if not event.instances:
        click.echo(f"sd: no instances of {label}", err=True)
        sys.exit(1)
