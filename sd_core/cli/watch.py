"""``sd watch``: a live table (or JSON lines) of a service's instances as they change."""

from __future__ import annotations

import time

import click
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from sd_core._event import Event
from sd_core._instance import Instance
from sd_core._selection import instancer
from sd_core._subscription import Subscription

from ._params import backend_options, parse_options
from ._render import error_text, event_json, instances_table
from ._signals import Interrupted, stop_on_signals

__all__ = ["watch"]


class _View:
    """What the table shows: the last good set, and the error that followed it if any."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.instances: tuple[Instance, ...] = ()
        self.error: str = ""
        self.updated = ""

    def apply(self, event: Event) -> None:
        self.updated = time.strftime("%H:%M:%S")
        if event.error is not None:
            self.error = error_text(event.error)
        else:
            self.instances = event.instances
            self.error = ""

    def render(self) -> RenderableType:
        title = f"{self.label}: {len(self.instances)} instances"
        caption: str | Text = f"updated {self.updated}" if self.updated else "waiting…"
        if self.error:
            caption = Text(f"error (showing the last good set): {self.error}", style="red")
        return instances_table(self.instances, title=title, caption=caption)


def _json_lines(sub: Subscription) -> None:
    for event in sub:
        click.echo(event_json(event))


def _table(sub: Subscription, label: str) -> None:
    console = Console(highlight=False, emoji=False)
    view = _View(label)
    if not console.is_terminal:
        for event in sub:
            view.apply(event)
            console.print(view.render())
        return
    with Live(view.render(), console=console, auto_refresh=False) as live:
        for event in sub:
            view.apply(event)
            live.update(view.render(), refresh=True)


@click.command()
@click.argument("backend", metavar="BACKEND_OR_URL")
@click.argument("service", required=False)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
def watch(*, backend: str, service: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Show the instances of SERVICE as they change, until interrupted (Ctrl-C)."""
    with stop_on_signals():
        try:
            source = instancer(backend, service, **parse_options(options))
            try:
                with source.subscribe() as sub:
                    if as_json:
                        _json_lines(sub)
                    else:
                        _table(sub, service or backend)
            finally:
                source.stop()
        except Interrupted:
            pass
