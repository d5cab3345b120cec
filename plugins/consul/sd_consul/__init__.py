"""Consul backend for sd-core: blocking health queries, agent registration with a TTL check.

Installed as ``sd-core[consul]``; select it with ``sd_core.instancer("consul://HOST:PORT/SERVICE")``
or ``sd_core.registrar("consul", registration, token=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import sd_core
import sd_core.plugin

from ._backend import ConsulBackend
from ._registrar import ConsulRegistrar

__all__ = ["ConsulBackend", "ConsulRegistrar", "register_backends"]


@sd_core.plugin.hookimpl
def register_backends(register: Callable[[sd_core.plugin.Backend], None]) -> None:
    """Provide the ``consul`` backend."""
    register(ConsulBackend())
