"""The hooks a plugin implements (pluggy marker name ``sd_core``).

A plugin module writes::

    from sd_core.plugin import hookimpl

    @hookimpl
    def register_backends(register):
        register(MyBackend())

and names that module in an entry point of group ``sd_core``.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from ._backend import Backend

__all__ = ["hookimpl", "hookspec", "register_backends"]

hookspec = pluggy.HookspecMarker("sd_core")
hookimpl = pluggy.HookimplMarker("sd_core")


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Call ``register(backend)`` once for each backend the plugin provides."""
