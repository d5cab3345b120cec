"""Eureka backend for sd-core: one registry poller per connection (a full fetch, then deltas
checked against the apps hashcode), and registrations renewed and restored after a 404.

Installed as ``sd-core[eureka]``; select it with
``sd_core.instancer("eureka://HOST:PORT/SERVICE")`` or
``sd_core.registrar("eureka", registration, address="http://user:password@host:8761/eureka")``.
"""

from __future__ import annotations

from collections.abc import Callable

import sd_core.plugin

from ._backend import EurekaBackend
from ._registrar import EurekaRegistrar

__all__ = ["EurekaBackend", "EurekaRegistrar", "register_backends"]


@sd_core.plugin.hookimpl
def register_backends(register: Callable[[sd_core.plugin.Backend], None]) -> None:
    """Provide the ``eureka`` backend."""
    register(EurekaBackend())
