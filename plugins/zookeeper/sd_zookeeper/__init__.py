"""ZooKeeper backend for sd-core: children watches; ephemeral nodes in the layout of Curator's
service discovery, as Spring Cloud Zookeeper writes them; one session per connection.

Installed as ``sd-core[zookeeper]``; select it with ``sd_core.instancer("zookeeper://HOST:PORT/SERVICE")``
(or ``zk://``) or ``sd_core.registrar("zookeeper", registration, address=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import sd_core.plugin

from ._backend import ZooKeeperBackend
from ._registrar import ZooKeeperRegistrar

__all__ = ["ZooKeeperBackend", "ZooKeeperRegistrar", "register_backends"]


@sd_core.plugin.hookimpl
def register_backends(register: Callable[[sd_core.plugin.Backend], None]) -> None:
    """Provide the ``zookeeper`` backend (alias ``zk``)."""
    register(ZooKeeperBackend())
