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
from ._plugins import BackendInfo, plugin_manager
from ._secrets import logger
from ._sharing import options_key, watches
from ._url import BackendURL, parse_backend

__all__ = ["backends", "instancer", "registrar", "select"]

log = logger("sd_core.selection")


def backends() -> Mapping[str, BackendInfo]:
    """The installed backends by name: each with its Backend, distribution and version."""
    return plugin_manager().backends()


_EXTRA = re.compile(r"""^\s*(sd-[A-Za-z0-9_.-]+)\b.*;\s*extra\s*==\s*["']([^"']+)["']""")


def _backend_extras() -> list[str]:
    """The extras of the sd-core distribution that install one backend plugin (an ``sd-*``
    distribution): not ``all``, nor the extras of client libraries (httpx, grpc)."""
    try:
        requirements = importlib.metadata.requires("sd-core") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    extras = {m.group(2) for r in requirements if (m := _EXTRA.match(r))}
    return sorted(extras - {"all"})


def _lookup(name: str) -> BackendInfo:
    manager = plugin_manager()
    installed = manager.backends()
    info = manager.find(name)
    if info is not None:
        return info
    names = ", ".join(sorted(installed)) or "none"
    extras = _backend_extras()
    if name.lower() in extras:
        hint = f'to install it: pip install "sd-core[{name.lower()}]"'
    else:
        hint = (
            f"no extra of sd-core provides it (extras: {', '.join(extras) or 'none'}); "
            f"install the plugin distribution that does"
        )
    message = (
        f"backend {name!r} is not available (plugin may not be installed); "
        f"installed backends: {names}; {hint}"
    )
    failures = manager.failures()
    if failures:
        message += "; plugins that failed to load: " + "; ".join(str(f) for f in failures)
    raise UnknownBackendError(message)


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
