"""The plugin authors' kit: everything a backend plugin builds on, and nothing users call.

A plugin declares a :class:`Backend` with its :class:`Option` values (the connection options
of a server backend come from :func:`connection_options`), registers it from a
:data:`hookimpl` of ``register_backends``, and builds on the machinery here:

- shared clients: :func:`connections` hands out one client per backend and connection options
  in the process (:class:`Lease`), closed by its last user;
- three ways to watch, with the same guarantees: :class:`WatchInstancer` (a blocking function
  in a thread), :class:`AsyncWatchInstancer` (a coroutine on the core's one event loop),
  :class:`PushInstancer` (the client's callbacks publish), and :class:`Fanout` (one
  registry-wide watch serving the instancers of many services);
- :class:`BaseRegistrar` for every kind of liveness: renewals by sync or async hooks, or none
  (``renews = False``) where a session or a lease keeps it and the plugin calls ``mark_lost``;
- :class:`Backoff`, the one :func:`clock` of the core (and :class:`FakeClock` for tests),
  secret scrubbing (:func:`scrub`, :func:`scrub_error`, :func:`add_secret`, :func:`logger`);
- :class:`Conformance`, what a plugin's test package tells the conformance suite of the
  ``pytest-sd`` distribution (``from pytest_sd.conformance import *`` and one fixture).

Users call :mod:`sd_core`; see ``docs/plugins.md`` for a whole plugin.
"""

from __future__ import annotations

from ._async_watch import AsyncWatch, AsyncWatchContext, AsyncWatchInstancer
from ._backend import Backend, Duration, Option
from ._backoff import Backoff
from ._broadcast import BaseInstancer
from ._clock import Clock, FakeClock, Signal, clock, use_clock
from ._conformance import CAPABILITIES, Conformance, Faults
from ._connection_options import (
    Address,
    TLSSettings,
    connection_options,
    parse_address,
    parse_addresses,
    tls_settings,
)
from ._connections import Connections, Lease, connections
from ._loop import CoreLoop, core_loop
from ._options import resolve_for
from ._push import Fanout, PushContext, PushInstancer, PushStart
from ._registrar import BaseRegistrar
from ._secrets import add_secret, logger, scrub, scrub_error
from ._watch import Watch, WatchContext, WatchingInstancer, WatchInstancer
from .hookspecs import hookimpl

__all__ = [
    "CAPABILITIES",
    "Address",
    "AsyncWatch",
    "AsyncWatchContext",
    "AsyncWatchInstancer",
    "Backend",
    "Backoff",
    "BaseInstancer",
    "BaseRegistrar",
    "Clock",
    "Conformance",
    "Connections",
    "CoreLoop",
    "Duration",
    "FakeClock",
    "Fanout",
    "Faults",
    "Lease",
    "Option",
    "PushContext",
    "PushInstancer",
    "PushStart",
    "Signal",
    "TLSSettings",
    "Watch",
    "WatchContext",
    "WatchInstancer",
    "WatchingInstancer",
    "add_secret",
    "clock",
    "connection_options",
    "connections",
    "core_loop",
    "hookimpl",
    "logger",
    "parse_address",
    "parse_addresses",
    "resolve_for",
    "scrub",
    "scrub_error",
    "tls_settings",
    "use_clock",
]
