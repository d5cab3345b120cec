"""etcd backend for sd-core: prefix reads and watches, registration under a kept-alive lease.

Installed as ``sd-core[etcd]``; select it with ``sd_core.instancer("etcd://HOST:PORT/SERVICE")``
or ``sd_core.registrar("etcd", registration, username=..., password=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import sd_core.plugin

from ._backend import EtcdBackend
from ._registrar import EtcdRegistrar

__all__ = ["EtcdBackend", "EtcdRegistrar", "register_backends"]


@sd_core.plugin.hookimpl
def register_backends(register: Callable[[sd_core.plugin.Backend], None]) -> None:
    """Provide the ``etcd`` backend."""
    register(EtcdBackend())
