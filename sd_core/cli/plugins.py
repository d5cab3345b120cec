"""``sd plugins``: the installed backends, their distributions, options, and failed plugins."""

from __future__ import annotations

import json
import math
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sd_core._backend import Duration, Option, duration_value, format_duration
from sd_core._plugins import BackendInfo, plugin_manager

__all__ = ["plugins"]


def _default(option: Option) -> Any:
    """The default as people write it: a duration as ``30s`` or ``never``."""
    default = option.default
    if option.type is Duration and default is not None:
        seconds = duration_value(option, default)
        return "never" if seconds == math.inf else format_duration(seconds)
    return default


def _option_json(option: Option) -> dict[str, Any]:
    return {
        "name": option.name,
        "type": option.type_name,
        "default": None if option.secret else _default(option),
        "help": option.help,
        "secret": option.secret,
        "env": option.env,
    }


def _backend_json(info: BackendInfo) -> dict[str, Any]:
    backend = info.backend
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "plugin": info.plugin,
        "description": backend.description,
        "supports_discovery": backend.supports_discovery,
        "supports_registration": backend.supports_registration,
        "options": [_option_json(option) for option in backend.options],
    }


def _supports(info: BackendInfo) -> str:
    backend = info.backend
    parts = [
        word
        for word, flag in (
            ("discovery", backend.supports_discovery),
            ("registration", backend.supports_registration),
        )
        if flag
    ]
    return ", ".join(parts) or "nothing"


def _option_line(option: Option) -> str:
    kind = option.type_name + (", secret" if option.secret else "")
    line = f"{option.name} ({kind})"
    if option.help:
        line += f": {option.help}"
    extras = []
    if option.default is not None and not option.secret:
        default = _default(option)
        extras.append(f"default {default}" if option.type is Duration else f"default {default!r}")
    if option.env:
        extras.append(f"env {option.env}")
    if extras:
        line += f" [{'; '.join(extras)}]"
    return line


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(*, as_json: bool) -> None:
    """List the installed backends, what they support, their options, and failed plugins."""
    manager = plugin_manager()
    installed = manager.backends()
    failures = manager.failures()
    if as_json:
        document = {
            "backends": [_backend_json(info) for info in installed.values()],
            "failed": [
                {
                    "plugin": f.plugin,
                    "distribution": f.distribution,
                    "version": f.version,
                    "error": f.error,
                }
                for f in failures
            ],
            "blocked": sorted(manager.blocked()),
        }
        click.echo(json.dumps(document, indent=2))
        return
    console = Console(highlight=False, emoji=False)
    if not installed:
        console.print("No backends are installed.")
    else:
        table = Table(title="Installed backends", title_justify="left")
        for column in ("backend", "distribution", "version", "supports", "description"):
            table.add_column(column, overflow="fold")
        for info in installed.values():
            table.add_row(
                info.name,
                info.distribution,
                info.version,
                _supports(info),
                info.backend.description,
            )
        console.print(table)
        for info in installed.values():
            console.print(f"\n[bold]{info.name}[/] options:")
            for option in info.backend.options:
                console.print(f"  {_option_line(option)}", markup=False, soft_wrap=True)
            if not info.backend.options:
                console.print("  (none)")
    if failures:
        console.print("\n[bold red]Plugins that failed to load:[/]")
        for failure in failures:
            console.print(f"  {failure}", markup=False)
    blocked = manager.blocked()
    if blocked:
        console.print(f"\nBlocked by SD_CORE_BLOCK_PLUGINS: {', '.join(sorted(blocked))}")
