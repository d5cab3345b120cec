"""The local registrar: one entry file, rewritten on every keepalive."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sd_core._instance import Registration
from sd_core._registrar import BaseRegistrar

from ._store import Entry, ensure_dir, entry_path, wall_clock, write_atomic

__all__ = ["LocalRegistrar"]


class LocalRegistrar(BaseRegistrar):
    """Announces a registration as a file under ``root``, refreshed every ``ttl / 3``.

    When the file vanishes (deleted by hand, or by an instancer that judged it stale after
    this process stalled), the next keepalive notices and the registration is restored.
    """

    backend_name = "local"

    def __init__(self, registration: Registration, root: Path) -> None:
        super().__init__(registration)
        self.root = root
        self.path = entry_path(root, registration.service, registration.id)
        """The entry file of this registration."""

    def _write(self) -> None:
        write_atomic(self.path, Entry.for_this_process(self.registration, wall_clock()).to_json())

    def _backend_register(self) -> None:
        ensure_dir(self.root, self.path.parent)
        self._write()

    def _backend_keepalive(self) -> bool:
        if not self.path.exists():
            return False
        self._write()
        return True

    def _backend_deregister(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
