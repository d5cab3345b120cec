"""A tiny sd_core plugin for the tests: the ``example`` backend.

Registrations are JSON files in the directory given by the ``path`` option; an instancer
reads that directory once (a :class:`sd_core.FixedInstancer`), so it sees what was
registered when it was created.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sd_core
import sd_core.plugin
from sd_core import FixedInstancer, Instance, Registration
from sd_core.plugin import BaseRegistrar, Option


class ExampleRegistrar(BaseRegistrar):
    """Writes the registration to ``<path>/<id>.json`` and removes it on deregistration."""

    backend_name = "example"

    def __init__(self, registration: Registration, path: Path) -> None:
        super().__init__(registration)
        self._file = path / f"{registration.id.replace('/', '_').replace(':', '_')}.json"

    def _backend_register(self) -> None:
        reg = self.registration
        data = {
            "service": reg.service,
            "host": reg.host,
            "port": reg.port,
            "id": reg.id,
            "tags": sorted(reg.tags),
            "meta": dict(reg.meta),
            "weight": reg.weight,
            "zone": reg.zone,
        }
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._file)

    def _backend_deregister(self) -> None:
        self._file.unlink(missing_ok=True)


def read_instances(path: Path, service: str, tags: Sequence[str]) -> list[Instance]:
    """The instances of ``service`` registered in ``path`` that carry every tag in ``tags``."""
    found = []
    for file in sorted(path.glob("*.json")):
        data = json.loads(file.read_text())
        if data["service"] != service or not set(tags) <= set(data["tags"]):
            continue
        found.append(
            Instance(
                host=data["host"],
                port=data["port"],
                id=data["id"],
                service=service,
                tags=frozenset(data["tags"]),
                meta=data["meta"],
                weight=data["weight"],
                zone=data["zone"],
            )
        )
    return found


class ExampleBackend:
    """Registrations as files in a directory; discovery reads the directory once."""

    name = "example"
    description = "registrations as JSON files in a directory (test plugin)"
    options = (
        Option("path", str, default=".", help="directory holding the registrations"),
        Option("address", str, help="ignored; accepted so that URLs with a host work"),
        Option("tag", list, help="only instances carrying every one of these tags"),
        Option("timeout", float, default=1.0, help="ignored"),
        Option("verbose", bool, default=False, help="ignored"),
        Option("retries", int, default=3, help="ignored"),
        Option("token", str, secret=True, env="SD_EXAMPLE_TOKEN", help="ignored secret"),
    )
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> FixedInstancer:
        return FixedInstancer(read_instances(Path(options["path"]), service, options["tag"] or ()))

    def registrar(self, registration: Registration, **options: Any) -> ExampleRegistrar:
        return ExampleRegistrar(registration, Path(options["path"]))


@sd_core.plugin.hookimpl
def register_backends(register: Any) -> None:
    register(ExampleBackend())
