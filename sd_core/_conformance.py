"""What a backend plugin tells the conformance suite about itself: :class:`Conformance`.

The suite itself (the tests) ships in the ``pytest-sd`` distribution, as the module
``pytest_sd.conformance``. A plugin's test package joins it with one file that star-imports
that module and defines one fixture, ``sd_conformance``, returning a :class:`Conformance`.
This module has no pytest in it: a plugin may build the description anywhere.

The names here:

* :class:`Conformance` -- the backend under test: its name, the options that reach the
  server, the capabilities it declares, its fault handles and its timing bounds.
* :class:`Faults` -- the fault handles (stop, start, restart with state lost, pause, resume).
* :data:`CAPABILITIES` -- every capability a backend may declare, with what it promises. A
  check that needs a capability the backend does not declare is skipped, and only then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from ._instance import Instance

__all__ = ["CAPABILITIES", "Conformance", "Faults", "ServerHandle"]

CAPABILITIES: Mapping[str, str] = MappingProxyType(
    {
        "discovery": "an instancer watches a service",
        "registration": "a registrar announces an instance",
        "tags": "Registration.tags survive registration -> discovery",
        "meta": "Registration.meta survives registration -> discovery",
        "weight": "Registration.weight survives registration -> discovery",
        "zone": "Registration.zone survives registration -> discovery",
        "process_death": "a SIGKILLed registering process drops out within ttl + death_margin",
        "set_status": "set_status(down_status) hides the instance, set_status(up_status) "
        "shows it again (the instancer shows healthy instances only)",
        "restart": "the server can be stopped and started with its state (Faults.stop and "
        "Faults.start): a deregistration that failed while it was down stays pending until "
        "the next close(), and subscribers converge once it is back",
        "restore": "the server can be restarted with its state lost (Faults.wipe): the "
        "registration is back within restore_within (default 2 x ttl)",
        "pause": "the server can be frozen and thawed (Faults.pause and Faults.resume): "
        "registration and subscribers converge after it thaws",
        "secret": "the backend takes a secret option (secret_options): the secret appears in "
        "no repr, error or DEBUG log",
    }
)
"""Every capability a backend may declare, and what declaring it promises."""

_NEEDS_FAULTS: Mapping[str, tuple[str, ...]] = {
    "restart": ("stop", "start"),
    "restore": ("wipe",),
    "pause": ("pause", "resume"),
}


class ServerHandle(Protocol):
    """What :meth:`Faults.of` takes: a test server with fault handles (the servers of
    ``pytest_sd`` have them)."""

    def stop(self) -> None: ...
    def start(self, *, wipe: bool = False) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Faults:
    """The fault handles the suite may call; each returns once the fault is in place (or,
    for ``start`` and ``wipe``, once the server is ready again).

    ``stop``: the server goes away, keeping its state. ``start``: it comes back with that
    state. ``wipe``: it restarts with its state lost (ready again on return). ``pause`` /
    ``resume``: it freezes (keeps its sockets, answers nothing) and thaws. A handle left
    ``None`` is missing, and a capability that needs it cannot be declared.
    """

    stop: Callable[[], object] | None = None
    start: Callable[[], object] | None = None
    wipe: Callable[[], object] | None = None
    pause: Callable[[], object] | None = None
    resume: Callable[[], object] | None = None

    @classmethod
    def of(cls, server: ServerHandle) -> Faults:
        """Every handle, from a server object with ``stop()``, ``start(wipe=...)``,
        ``pause()`` and ``resume()``."""

        def wipe() -> None:
            server.stop()
            server.start(wipe=True)

        return cls(
            stop=server.stop,
            start=server.start,
            wipe=wipe,
            pause=server.pause,
            resume=server.resume,
        )


def _same_id(instance: Instance) -> str:
    return instance.id


@dataclass(frozen=True, kw_only=True)
class Conformance:
    """A backend as the conformance suite sees it.

    ``backend``: the name given to ``sd_core.instancer`` / ``sd_core.registrar``.
    ``options``: their keyword options (reaching the test server, with short timings).
    ``capabilities``: what the backend can do, names from :data:`CAPABILITIES`; checks that
    need anything else are skipped by declaration. ``faults``: the fault handles the
    ``restart``, ``restore`` and ``pause`` capabilities need. ``secret_options``: options
    holding a secret (added to ``options`` by the ``secret`` check), required by that
    capability.

    Timing bounds: ``ttl`` is the registration TTL the checks use; ``propagation`` how long
    a change may take to reach a subscriber; ``death_margin`` how long past its TTL a killed
    process's registration may linger; ``restore_within`` how soon after the server lost its
    state (or thawed) the registration must be back (default ``2 * ttl``); ``recovery`` how
    soon after the server is back a subscriber must see the backend again (its retry
    backoff cap plus a request).

    ``host`` is the address the registrations announce; ``registered_id`` recovers the
    ``Registration.id`` from a discovered instance (a backend may qualify ids, say by node);
    ``up_status`` / ``down_status`` are the ``set_status`` values that show and hide an
    instance.
    """

    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset({"discovery", "registration"})
    faults: Faults = field(default_factory=Faults)
    secret_options: Mapping[str, str] = field(default_factory=dict)
    ttl: float = 2.0
    propagation: float = 5.0
    death_margin: float = 3.0
    restore_within: float | None = None
    recovery: float = 5.0
    host: str = "127.0.0.1"
    registered_id: Callable[[Instance], str] = _same_id
    up_status: str = "passing"
    down_status: str = "critical"

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a backend name, got {self.backend!r}")
        capabilities = self.capabilities
        if isinstance(capabilities, str) or not isinstance(capabilities, Iterable):
            raise TypeError(f"capabilities must be a set of names, got {capabilities!r}")
        capabilities = frozenset(capabilities)
        object.__setattr__(self, "capabilities", capabilities)
        unknown = capabilities - CAPABILITIES.keys()
        if unknown:
            raise ValueError(
                f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}"
            )
        for capability, handles in _NEEDS_FAULTS.items():
            missing = [h for h in handles if getattr(self.faults, h) is None]
            if capability in capabilities and missing:
                raise ValueError(
                    f"capability {capability!r} needs the fault handles {', '.join(missing)}"
                )
        if "secret" in capabilities and not self.secret_options:
            raise ValueError("capability 'secret' needs secret_options (option name -> secret)")
        for name in ("ttl", "propagation", "death_margin", "recovery"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        bound = self.restore_within
        if bound is not None and not (math.isfinite(bound) and bound > 0):
            raise ValueError(f"restore_within must be a positive number of seconds, got {bound!r}")

    @property
    def restore_bound(self) -> float:
        """How soon a lost registration must be back: ``restore_within``, else ``2 * ttl``."""
        return 2 * self.ttl if self.restore_within is None else self.restore_within

    def __repr__(self) -> str:
        # Option values (secrets among them) stay out: test reports print fixture values.
        return (
            f"Conformance(backend={self.backend!r}, options={sorted(self.options)!r}, "
            f"capabilities={sorted(self.capabilities)!r}, ttl={self.ttl:g})"
        )
