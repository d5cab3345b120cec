"""The built-in ``local`` backend: one JSON file per instance in a local directory.

It needs no server and serves demos, tests and processes on one host. See
``docs/backends/local.md`` for the directory format and the liveness rules.
"""

from __future__ import annotations

from collections.abc import Callable

from sd_core._backend import Backend
from sd_core.hookspecs import hookimpl

from ._backend import LocalBackend
from ._registrar import LocalRegistrar

__all__ = ["LocalBackend", "LocalRegistrar", "register_backends"]


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    """Register the ``local`` backend."""
    register(LocalBackend())
