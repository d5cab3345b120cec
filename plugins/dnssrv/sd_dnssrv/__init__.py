"""DNS SRV backend for sd-core: TTL-driven SRV lookups with RFC 2782 priority and weight, and
registration by RFC 2136 dynamic update signed with TSIG.

Installed as ``sd-core[dnssrv]``; select it as ``dnssrv`` (or ``dns``):
``sd_core.instancer("dnssrv://10.0.0.2:53/web?domain=example.com")`` or
``sd_core.registrar("dnssrv", registration, server=..., zone=..., key_name=..., key_secret=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import sd_core.plugin

from ._backend import DnsSrvBackend
from ._registrar import DnsSrvRegistrar

__all__ = ["DnsSrvBackend", "DnsSrvRegistrar", "register_backends"]


@sd_core.plugin.hookimpl
def register_backends(register: Callable[[sd_core.plugin.Backend], None]) -> None:
    """Provide the ``dnssrv`` backend (alias ``dns``)."""
    register(DnsSrvBackend())
