"""Command-line parameters shared by several commands: backend options and registrations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from sd_core._instance import Registration
from sd_core._url import parse_backend

__all__ = ["backend_options", "parse_options", "registration", "registration_options"]

F = TypeVar("F", bound=Callable[..., Any])


def parse_options(pairs: Sequence[str]) -> dict[str, str | list[str]]:
    """``KEY=VALUE`` pairs to options; a key given more than once collects a list."""
    options: dict[str, str | list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            # The argument is not echoed: it may hold a secret.
            raise click.BadParameter("expected KEY=VALUE", param_hint="'-o' / '--option'")
        previous = options.get(key)
        if previous is None:
            options[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            options[key] = [previous, value]
    return options


def backend_options(command: F) -> F:
    """Add ``-o/--option KEY=VALUE`` (repeatable), passed to the command as ``options``."""
    return click.option(
        "-o",
        "--option",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="A backend option (repeat for more, or for a list option). "
        "Prefer the environment for secrets: the command line is visible to other users.",
    )(command)


def registration_options(command: F) -> F:
    """Add the options that describe a registration."""
    decorators = [
        click.option("--service", "-s", help="Service name (default: the URL's path)."),
        click.option("--port", "-p", type=click.IntRange(1, 65535), required=True),
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--id", "instance_id", default="", help="Instance id (default host:port)."),
        click.option("--tag", "tags", multiple=True, help="A tag (repeatable)."),
        click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata."),
        click.option("--ttl", type=float, default=10.0, show_default=True, help="Seconds."),
        click.option("--weight", type=click.IntRange(min=0), default=1, show_default=True),
        click.option("--zone", default=""),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def registration(
    backend: str,
    *,
    service: str | None,
    port: int,
    host: str,
    instance_id: str,
    tags: Sequence[str],
    meta: Sequence[str],
    ttl: float,
    weight: int,
    zone: str,
) -> Registration:
    """The Registration the options describe; the service defaults to the URL's path."""
    service = service or parse_backend(backend).service
    if not service:
        raise click.UsageError("no service: give --service or put it in the URL path")
    meta_map: dict[str, str] = {}
    for pair in meta:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="'--meta'")
        meta_map[key] = value
    return Registration(
        service=service,
        host=host,
        port=port,
        id=instance_id,
        tags=frozenset(tags),
        meta=meta_map,
        ttl=ttl,
        weight=weight,
        zone=zone,
    )
