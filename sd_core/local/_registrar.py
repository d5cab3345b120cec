"""The local registrar: one entry file of its own, rewritten on every keepalive."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sd_core._errors import RegistrationError
from sd_core._instance import Registration
from sd_core._registrar import BaseRegistrar

from ._store import (
    Entry,
    ensure_dir,
    entry_path,
    new_owner,
    oversize,
    wall_clock,
    write_atomic,
)

__all__ = ["LocalRegistrar"]


class LocalRegistrar(BaseRegistrar):
    """Announces a registration as a file under ``root``, refreshed every ``ttl / 3``.

    Each registrar writes a file of its own, so registrars that announce the same id never
    remove or overwrite each other's entry: while several are live, instancers show the one
    registered last, and when it goes the one before it is shown again, with no gap.

    When the file vanishes (deleted by hand, or by an instancer that found this process
    gone), the next keepalive notices and the registration is restored.
    """

    backend_name = "local"

    def __init__(self, registration: Registration, root: Path) -> None:
        super().__init__(registration)
        self.root = root
        self.owner = new_owner()
        """Tells this registrar's file apart from those of other registrars of the same id."""
        self.path = entry_path(root, registration.service, registration.id, self.owner)
        """The entry file of this registration."""
        self._registered_at: float | None = None

    def _write(self) -> None:
        now = wall_clock()
        if self._registered_at is None:
            self._registered_at = now
        entry = Entry.for_this_process(self.registration, now, self._registered_at)
        write_atomic(self.path, entry.to_json())

    def _backend_register(self) -> None:
        problem = oversize(self.registration)
        if problem is not None:
            # Every instancer would skip such a file: refuse it rather than keep it alive.
            reg = self.registration
            raise RegistrationError(f"local: cannot register {reg.service} {reg.id}: {problem}")
        ensure_dir(self.root, self.path.parent)
        self._write()

    def _backend_keepalive(self) -> bool:
        if not self.path.exists():
            return False
        self._write()
        return True

    def _backend_deregister(self) -> None:
        # Only this registrar's own file: another registrar of the same id keeps its entry.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._registered_at = None
