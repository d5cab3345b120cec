"""How instances and events look on the terminal and in JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from sd_core._event import Event
from sd_core._instance import Instance
from sd_core._secrets import scrub

__all__ = ["error_text", "event_json", "instance_json", "instances_table"]


def instance_json(instance: Instance) -> dict[str, Any]:
    """An instance as a JSON object."""
    return {
        "id": instance.id,
        "service": instance.service,
        "host": instance.host,
        "port": instance.port,
        "address": instance.address,
        "tags": sorted(instance.tags),
        "meta": dict(instance.meta),
        "weight": instance.weight,
        "priority": instance.priority,
        "zone": instance.zone,
    }


def error_text(error: BaseException) -> str:
    """One line describing the error an event carries."""
    message = scrub(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def event_json(event: Event) -> str:
    """``{"instances": [...]}`` or ``{"error": "..."}`` on one line."""
    if event.error is not None:
        return json.dumps({"error": error_text(event.error)})
    return json.dumps({"instances": [instance_json(i) for i in event.instances]})


def instances_table(
    instances: Sequence[Instance], *, title: str = "", caption: str | Text = ""
) -> Table:
    """A table of instances: id, address, tags, meta, weight, zone."""
    table = Table(title=title or None, caption=caption or None, caption_justify="left")
    table.add_column("id", overflow="fold")
    table.add_column("address", no_wrap=True)
    table.add_column("tags", overflow="fold")
    table.add_column("meta", overflow="fold")
    table.add_column("weight", justify="right")
    table.add_column("zone")
    for instance in instances:
        table.add_row(
            instance.id,
            instance.address,
            ", ".join(sorted(instance.tags)),
            ", ".join(f"{k}={v}" for k, v in sorted(instance.meta.items())),
            str(instance.weight),
            instance.zone,
        )
    return table
