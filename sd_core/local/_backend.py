"""LocalBackend: the ``local`` backend as the plugin manager sees it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sd_core._backend import Option
from sd_core._errors import ConfigError
from sd_core._instance import Registration
from sd_core._options import resolve_for
from sd_core._push import PushInstancer

from ._instancer import local_instancer
from ._registrar import LocalRegistrar
from ._store import check_default_root, default_root

__all__ = ["LocalBackend"]


class LocalBackend:
    """Instances as JSON files in a local directory: no server, processes on one host."""

    name = "local"
    description = "JSON files in a local directory; no server, one host"
    options: Sequence[Option] = (
        Option(
            "path",
            str,
            default=None,
            help="the directory (default: $XDG_RUNTIME_DIR/sd, else <tmp>/sd-<uid>)",
            env="SD_LOCAL_PATH",
        ),
    )
    supports_discovery = True
    supports_registration = True

    def instancer(self, service: str, **options: Any) -> PushInstancer:
        """Watch ``service`` in the directory (option ``path``)."""
        if not isinstance(service, str) or not service.strip():
            raise ConfigError(f"local: service must be a non-empty string, got {service!r}")
        return local_instancer(self.root(**options), service)

    def registrar(self, registration: Registration, **options: Any) -> LocalRegistrar:
        """Announce ``registration`` in the directory (option ``path``)."""
        return LocalRegistrar(registration, self.root(**options))

    def root(self, **options: Any) -> Path:
        """The directory the options name (resolved as ``sd_core.instancer`` does)."""
        path = resolve_for(self, options)["path"]
        if not path:
            root = default_root()
            check_default_root(root)
            return root
        root = Path(path).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise ConfigError(f"local: option path {str(root)!r} is not a directory")
        return root

    def __repr__(self) -> str:
        return "<LocalBackend>"
