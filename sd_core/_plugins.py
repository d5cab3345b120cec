"""The plugin manager: a typed front over pluggy that finds and loads backends.

Plugins are modules named by entry points of group ``sd_core``; the built-in backends
register through the same hook. Loading happens lazily, once, on the first question asked
of the manager. A plugin that fails to import, or whose hook raises, is reported (a
warning naming the plugin, its distribution and the error) and recorded; the others still
load.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import pluggy

from . import hookspecs
from ._backend import Backend, Option
from ._secrets import logger

__all__ = [
    "BLOCK_ENV",
    "BUILTIN_DISTRIBUTION",
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "PluginFailure",
    "PluginManager",
    "plugin_manager",
]

log = logger("sd_core.plugins")

ENTRY_POINT_GROUP = "sd_core"
BLOCK_ENV = "SD_CORE_BLOCK_PLUGINS"
BUILTIN_DISTRIBUTION = "sd-core"
BUILTIN_PLUGINS: tuple[str, ...] = ("sd_core.local",)
"""Modules inside sd_core that register backends through the hook, loaded before entry points."""


class _EntryPoint(Protocol):
    """What the manager needs of an ``importlib.metadata.EntryPoint``."""

    @property
    def name(self) -> str: ...

    @property
    def dist(self) -> importlib.metadata.Distribution | None: ...

    def load(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """An installed backend and the distribution that provides it."""

    name: str
    backend: Backend
    distribution: str
    version: str
    plugin: str
    """The name the plugin was loaded under (its entry point name, or the built-in module)."""

    @property
    def options(self) -> Sequence[Option]:
        """The options the backend declares."""
        return self.backend.options


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    plugin: str
    distribution: str
    version: str
    error: str

    def __str__(self) -> str:
        return (
            f"plugin {self.plugin!r} ({_dist_label(self.distribution, self.version)}): {self.error}"
        )


def _dist_label(distribution: str, version: str) -> str:
    return f"{distribution} {version}" if version else distribution


def _default_entry_points() -> Iterable[_EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _builtin_version() -> str:
    try:
        return importlib.metadata.version(BUILTIN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _blocked_from_env(environ: Mapping[str, str]) -> frozenset[str]:
    return frozenset(name.strip() for name in environ.get(BLOCK_ENV, "").split(",") if name.strip())


@dataclass(frozen=True, slots=True)
class _Loaded:
    plugin: str
    module: object
    distribution: str
    version: str


class PluginManager:
    """Finds the plugins, calls their hooks and keeps the backends they register.

    ``entry_points`` returns the entry points of group ``sd_core`` (injected by tests);
    ``builtins`` are module names loaded first, as if they were plugins of ``sd-core``;
    ``environ`` is read for ``SD_CORE_BLOCK_PLUGINS`` (comma-separated plugin names).
    """

    def __init__(
        self,
        *,
        entry_points: Callable[[], Iterable[_EntryPoint]] = _default_entry_points,
        builtins: Sequence[str] = BUILTIN_PLUGINS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._entry_points = entry_points
        self._builtins = tuple(builtins)
        self._environ = os.environ if environ is None else environ
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._lock = threading.Lock()
        self._loaded = False
        self._backends: dict[str, BackendInfo] = {}
        self._aliases: dict[str, BackendInfo] = {}
        self._failures: list[PluginFailure] = []
        self._blocked: frozenset[str] = frozenset()

    # -- the questions -------------------------------------------------------------------
    def backends(self) -> Mapping[str, BackendInfo]:
        """Installed backends by name, in load order (built-in ones first)."""
        self.load()
        return MappingProxyType(self._backends)

    def find(self, name: str) -> BackendInfo | None:
        """The backend named ``name`` or one of its aliases (any case), or None."""
        self.load()
        for candidate in (name, name.lower()):
            info = self._backends.get(candidate) or self._aliases.get(candidate)
            if info is not None:
                return info
        return None

    def loaded(self, plugin: str) -> bool:
        """Whether the plugin of that entry-point name loaded (it may have registered no
        backend)."""
        self.load()
        return bool(self._pm.has_plugin(plugin))

    def failures(self) -> tuple[PluginFailure, ...]:
        """The plugins that failed to load."""
        self.load()
        return tuple(self._failures)

    def blocked(self) -> frozenset[str]:
        """The plugin names blocked by ``SD_CORE_BLOCK_PLUGINS``."""
        self.load()
        return self._blocked

    # -- the hooks, one typed method each ------------------------------------------------
    def register_backends(self, plugin: object, register: Callable[[Backend], None]) -> None:
        """Call ``register_backends`` of one plugin."""
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        self._pm.subset_hook_caller("register_backends", remove_plugins=others)(register=register)

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the built-in plugins and the entry points (once; later calls do nothing)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._blocked = _blocked_from_env(self._environ)
            for name in self._blocked:
                self._pm.set_blocked(name)
            for loaded in self._import_all():
                self._collect(loaded)
            self._loaded = True

    def _import_all(self) -> list[_Loaded]:
        result: list[_Loaded] = []
        version = _builtin_version()
        for module_name in self._builtins:
            if self._pm.is_blocked(module_name):
                continue
            loader = functools.partial(importlib.import_module, module_name)
            loaded = self._import(module_name, BUILTIN_DISTRIBUTION, version, loader)
            if loaded is not None:
                result.append(loaded)
        try:
            entry_points = list(self._entry_points())
        except Exception as exc:
            self._fail(ENTRY_POINT_GROUP, "?", "", f"could not list entry points: {exc!r}")
            entry_points = []
        for ep in entry_points:
            if self._pm.is_blocked(ep.name) or self._pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            distribution = dist.name if dist is not None else "unknown distribution"
            dist_version = dist.version if dist is not None else ""
            loaded = self._import(ep.name, distribution, dist_version, ep.load)
            if loaded is not None:
                result.append(loaded)
        return result

    def _import(
        self,
        plugin: str,
        distribution: str,
        version: str,
        loader: Callable[[], object],
    ) -> _Loaded | None:
        try:
            module = loader()
            self._pm.register(module, name=plugin)
        except Exception as exc:
            self._fail(
                plugin, distribution, version, f"failed to load: {type(exc).__name__}: {exc}"
            )
            return None
        try:
            # A hook implementation that matches no hook (a misspelt name) is this plugin's.
            self._pm.check_pending()
        except Exception as exc:
            self._pm.unregister(module)
            self._fail(
                plugin, distribution, version, f"failed to load: {type(exc).__name__}: {exc}"
            )
            return None
        return _Loaded(plugin, module, distribution, version)

    def _collect(self, loaded: _Loaded) -> None:
        found: list[Backend] = []
        try:
            self.register_backends(loaded.module, found.append)
            for backend in found:
                _check_backend(backend)
        except Exception as exc:
            self._pm.unregister(loaded.module)
            self._fail(
                loaded.plugin,
                loaded.distribution,
                loaded.version,
                f"register_backends failed: {type(exc).__name__}: {exc}",
            )
            return
        for backend in found:
            info = BackendInfo(
                backend.name, backend, loaded.distribution, loaded.version, loaded.plugin
            )
            first = self._backends.get(backend.name)
            if first is not None:
                log.warning(
                    "backend %r of %s ignored: %s already provides it",
                    backend.name,
                    _dist_label(info.distribution, info.version),
                    _dist_label(first.distribution, first.version),
                )
                continue
            self._backends[backend.name] = info
            for alias in getattr(backend, "aliases", ()) or ():
                taken = self._backends.get(alias) or self._aliases.get(alias)
                if taken is not None:
                    log.warning("alias %r of backend %r ignored: it is taken", alias, backend.name)
                    continue
                self._aliases[alias] = info

    def _fail(self, plugin: str, distribution: str, version: str, error: str) -> None:
        failure = PluginFailure(plugin, distribution, version, error)
        self._failures.append(failure)
        log.warning("sd_core %s; its backends are not available", failure)


def _check_backend(backend: object) -> None:
    if not isinstance(backend, Backend):
        raise TypeError(f"{backend!r} is not a Backend (name, description, options, ...)")
    if not isinstance(backend.name, str) or not backend.name:
        raise TypeError(f"{backend!r} has no name")
    seen: set[str] = set()
    for option in backend.options:
        if not isinstance(option, Option):
            raise TypeError(f"backend {backend.name!r}: {option!r} is not an Option")
        if option.name in seen:
            raise TypeError(f"backend {backend.name!r} declares option {option.name!r} twice")
        seen.add(option.name)


_manager = PluginManager()


def plugin_manager() -> PluginManager:
    """The process-wide plugin manager (it loads the plugins on the first question)."""
    return _manager
