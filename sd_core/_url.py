"""Backend URLs: ``NAME://host:port/service?option=value&tag=a&tag=b``."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from ._errors import ConfigError

__all__ = ["BackendURL", "parse_backend"]


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A backend name or URL taken apart.

    ``address`` is the URL's ``host:port`` (IPv6 in brackets) or None; ``service`` is the
    path without its slashes, or None; ``query`` maps each parameter to its values in order.
    """

    backend: str
    address: str | None = None
    service: str | None = None
    query: dict[str, list[str]] = field(default_factory=dict)
    is_url: bool = False


def parse_backend(name_or_url: str) -> BackendURL:
    """Parse a backend name (``"consul"``) or URL (``"consul://127.0.0.1:8500/web?tag=x"``).

    Errors never quote the URL, which may carry a secret in its query.
    """
    if not isinstance(name_or_url, str) or not name_or_url.strip():
        raise ConfigError(f"a backend name or URL is required, got {name_or_url!r}")
    name, sep, rest = name_or_url.strip().partition("://")
    if not name:
        raise ConfigError("the backend URL has no backend name before '://'")
    if not sep:
        return BackendURL(backend=name)
    parts = urllib.parse.urlsplit("//" + rest)
    if parts.fragment:
        raise ConfigError(f"{name}: a backend URL takes no '#fragment'")
    netloc = parts.netloc
    if "@" in netloc:
        raise ConfigError(
            f"{name}: credentials do not belong in the URL's address; pass them as options"
        )
    if netloc:
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ConfigError(
                f"{name}: the URL's address {netloc!r} must be host:port with a port in 0..65535"
            ) from None
        if not parts.hostname:
            raise ConfigError(f"{name}: the URL's address {netloc!r} has no host")
    query: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    service = urllib.parse.unquote(parts.path).strip("/") or None
    return BackendURL(
        backend=name, address=netloc or None, service=service, query=query, is_url=True
    )
