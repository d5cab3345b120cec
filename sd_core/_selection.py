"""Selecting a backend by name or URL: ``backends()``, ``instancer()``, ``registrar()``."""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Mapping
from typing import Any

from ._contracts import Instancer, Registrar
from ._errors import ConfigError, UnknownBackendError
from ._instance import Registration
from ._options import redacted, resolve_options
from ._plugins import (
    BLOCK_ENV,
    BUILTIN_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    BackendInfo,
    PluginManager,
    plugin_manager,
)
from ._secrets import logger
from ._sharing import options_key, watches
from ._url import BackendURL, parse_backend

__all__ = ["backends", "instancer", "registrar", "select"]

log = logger("sd_core.selection")


def backends() -> Mapping[str, BackendInfo]:
    """The installed backends by name: each with its Backend, distribution and version."""
    return plugin_manager().backends()


_EXTRA = re.compile(r"""^\s*(sd-[A-Za-z0-9_.-]+)\b.*;\s*extra\s*==\s*["']([^"']+)["']""")


def _backend_extras() -> dict[str, str]:
    """The extras of the sd-core distribution that install one backend plugin (an ``sd-*``
    distribution), each with that distribution: not ``all``, nor the extras of client
    libraries (httpx, grpc)."""
    try:
        requirements = importlib.metadata.requires(BUILTIN_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    extras = {m.group(2): m.group(1) for r in requirements if (m := _EXTRA.match(r))}
    extras.pop("all", None)
    return dict(sorted(extras.items()))


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _installed(distribution: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _providers(name: str, extras: Mapping[str, str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions that should provide backend ``name``: the one sd-core's
    extra of that name installs, and those declaring an entry point of that name."""
    candidates = [_installed(extras[name])] if name in extras else []
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
    candidates += [ep.dist for ep in entry_points]
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in candidates:
        if dist is not None and dist.name:
            found.setdefault(_normalized(dist.name), dist)
    return list(found.values())


def _diagnosis(
    name: str, dist: importlib.metadata.Distribution, manager: PluginManager
) -> str | None:
    """Why an installed distribution that should provide backend ``name`` does not; None
    when the plugin manager never saw it (then it is, for the manager, not installed)."""
    label = f"{dist.name} {dist.version}"
    key = _normalized(dist.name)
    plugins = sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)
    if not plugins:
        return (
            f"{label} is installed but declares no entry point in group {ENTRY_POINT_GROUP!r} "
            f"(a broken build or installation; reinstall it)"
        )
    failures = [f for f in manager.failures() if _normalized(f.distribution) == key]
    if failures:
        return f"{label} is installed but " + "; ".join(
            f"its plugin {f.plugin!r} {_failed(f.error)}" for f in failures
        )
    installed = manager.backends()
    provided = sorted(n for n, i in installed.items() if _normalized(i.distribution) == key)
    if provided:
        return (
            f"{label} is installed but its plugin registers no backend {name!r} "
            f"(it registers: {', '.join(provided)})"
        )
    blocked = [plugin for plugin in plugins if plugin in manager.blocked()]
    if blocked:
        return (
            f"{label} is installed but its plugin {', '.join(map(repr, blocked))} is blocked "
            f"by {BLOCK_ENV}"
        )
    loaded = [plugin for plugin in plugins if manager.loaded(plugin)]
    if loaded:
        return (
            f"{label} is installed and its plugin {', '.join(map(repr, loaded))} loaded, "
            f"but it registers no backend"
        )
    return None


def _failed(error: str) -> str:
    """A plugin failure's error as the end of a sentence ("... failed to load: ...")."""
    return error if error.startswith("failed to load") else f"failed to load: {error}"


def _unknown_backend_message(name: str, manager: PluginManager) -> str:
    names = ", ".join(sorted(manager.backends())) or "none"
    extras = _backend_extras()
    key = name.lower()
    failures = manager.failures()
    try:
        explained = [(d, _diagnosis(key, d, manager)) for d in _providers(key, extras)]
    except Exception:  # unreadable metadata must not hide the error being reported
        log.debug("could not tell why backend %r is missing", name, exc_info=True)
        explained = []
    for dist, diagnosis in explained:
        if diagnosis is not None:
            message = f"backend {name!r} is not available: {diagnosis}; installed backends: {names}"
            others = [f for f in failures if _normalized(f.distribution) != _normalized(dist.name)]
            if others:
                message += "; other plugins that failed to load: " + "; ".join(map(str, others))
            return message
    if key in extras:
        hint = f'to install it: pip install "sd-core[{key}]"'
    else:
        hint = (
            f"no extra of sd-core provides it (extras: {', '.join(extras) or 'none'}); "
            f"install the plugin distribution that does"
        )
    message = (
        f"backend {name!r} is not available (plugin may not be installed); "
        f"installed backends: {names}; {hint}"
    )
    if failures:
        message += "; plugins that failed to load: " + "; ".join(str(f) for f in failures)
    return message


def _lookup(name: str) -> BackendInfo:
    manager = plugin_manager()
    info = manager.find(name)
    if info is not None:
        return info
    raise UnknownBackendError(_unknown_backend_message(name, manager))


def select(
    name_or_url: str, service: str | None, options: Mapping[str, Any]
) -> tuple[BackendInfo, str | None, dict[str, Any]]:
    """Resolve a name or URL and options to a backend, a service and the typed options."""
    target: BackendURL = parse_backend(name_or_url)
    info = _lookup(target.backend)
    backend = info.backend
    query = dict(target.query)
    if target.address is not None:
        if not any(option.name == "address" for option in backend.options):
            raise ConfigError(
                f"{backend.name}: this backend takes no address; "
                f"write {backend.name}:///SERVICE or just {backend.name!r}"
            )
        if "address" in query:
            raise ConfigError(f"{backend.name}: the URL gives the address twice")
        query["address"] = [target.address]
    if service is not None and target.service is not None and service != target.service:
        raise ConfigError(
            f"{backend.name}: the URL names service {target.service!r} "
            f"but {service!r} was given too"
        )
    resolved = resolve_options(backend, keywords=options, query=query, environ=os.environ)
    return info, service if service is not None else target.service, resolved


def instancer(name_or_url: str, service: str | None = None, **options: Any) -> Instancer:
    """An instancer of ``service`` in the backend named (or described by a URL).

    ``instancer("consul://127.0.0.1:8500/web?tag=prod")`` watches service ``web`` of the
    Consul agent at 127.0.0.1:8500, keeping instances tagged ``prod``. Keyword options
    override the URL's query, which overrides environment variables, which override
    defaults. Raises :class:`UnknownBackendError` for a backend that is not installed and
    :class:`ConfigError` for a missing service or a bad option.

    Instancers of the same backend, service and options in the process share one watch of
    the backend (one query stream and connection); each has its own subscribers, and the
    watch stops when the last of them stops.
    """
    info, service, resolved = select(name_or_url, service, options)
    backend = info.backend
    if not backend.supports_discovery:
        raise ConfigError(f"the {backend.name} backend does not support discovery")
    if not service:
        takes_address = any(option.name == "address" for option in backend.options)
        form = "HOST:PORT/SERVICE" if takes_address else "/SERVICE"
        raise ConfigError(
            f"{backend.name}: no service given; pass it as the service argument "
            f"or as the URL path ({backend.name}://{form})"
        )
    log.debug(
        "instancer of %r on backend %s with %s", service, backend.name, redacted(backend, resolved)
    )
    key = (backend, service, options_key(resolved))
    return watches().instancer(key, lambda: backend.instancer(service, **resolved))


def registrar(
    name_or_url: str, registration: Registration | None = None, **options: Any
) -> Registrar:
    """A registrar announcing ``registration`` to the backend named (or described by a URL).

    The registration is required. A URL may have a path only when it equals
    ``registration.service``. Options are resolved as for :func:`instancer`.
    """
    service = registration.service if isinstance(registration, Registration) else None
    info, _, resolved = select(name_or_url, service, options)
    backend = info.backend
    if not backend.supports_registration:
        raise ConfigError(f"the {backend.name} backend does not support registration")
    if not isinstance(registration, Registration):
        raise ConfigError(
            f"{backend.name}: registrar() needs a Registration(service=..., host=..., port=...), "
            f"got {type(registration).__name__}"
        )
    log.debug(
        "registrar of %r on backend %s with %s",
        registration,
        backend.name,
        redacted(backend, resolved),
    )
    return backend.registrar(registration, **resolved)
