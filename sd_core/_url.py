"""Backend URLs: ``NAME://host:port/service?option=value&tag=a&tag=b``."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from ._errors import ConfigError
from ._instance import host_problem

__all__ = ["ADDRESS_ACCEPTED", "BackendURL", "parse_backend"]

ADDRESS_ACCEPTED = (
    "HOST or HOST:PORT, where HOST is a hostname (ASCII letters, digits, '-' and '_' in "
    "dot-separated labels), an IPv4 address or an IPv6 address in brackets (a zone written "
    "%25zone), and PORT is a number in 1..65535"
)
"""What the address part of a backend URL may be, as error messages say it."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_PORT_DIGITS = 5


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A backend name or URL taken apart.

    ``address`` is the URL's ``host:port`` (IPv6 in brackets, percent-decoded) or None;
    ``service`` is the path without its slashes, or None; ``query`` maps each parameter to
    its values in order.
    """

    backend: str
    address: str | None = None
    service: str | None = None
    query: dict[str, list[str]] = field(default_factory=dict)
    is_url: bool = False


def parse_backend(name_or_url: str) -> BackendURL:
    """Parse a backend name (``"consul"``) or URL (``"consul://127.0.0.1:8500/web?tag=x"``).

    A malformed URL raises :class:`ConfigError` saying what is wrong and what is accepted.
    Errors never quote the URL's query, which may carry a secret.
    """
    if not isinstance(name_or_url, str) or not name_or_url.strip():
        raise ConfigError(f"a backend name or URL is required, got {name_or_url!r}")
    text = name_or_url.strip()
    if _CONTROL.search(text):
        # Not quoted: the query may hold a secret. urllib would silently drop tabs and newlines.
        raise ConfigError(
            "the backend name or URL holds a control character (U+0000-U+001F or U+007F); "
            "a URL takes them only percent-encoded"
        )
    name, sep, rest = text.partition("://")
    if not name:
        raise ConfigError("the backend URL has no backend name before '://'")
    if not sep:
        return BackendURL(backend=name)
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if 0 <= at < end:
            end = at
    netloc, tail = rest[:end], rest[end:]
    tail, hash_mark, _fragment = tail.partition("#")
    if hash_mark:
        raise ConfigError(f"{name}: a backend URL takes no '#fragment'")
    path, _, raw_query = tail.partition("?")
    address = _address(name, netloc)
    query: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    try:
        service = urllib.parse.unquote(path, errors="strict").strip("/") or None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{name}: the URL's service (its path) is not valid UTF-8 once percent-decoded"
        ) from None
    if service is not None and _CONTROL.search(service):
        raise ConfigError(
            f"{name}: the URL's service {service!r} holds a control character "
            "(U+0000-U+001F or U+007F) once percent-decoded"
        )
    return BackendURL(backend=name, address=address, service=service, query=query, is_url=True)


def _address(name: str, netloc: str) -> str | None:
    """The URL's address as ``host[:port]``, checked, percent-decoded, IPv6 in brackets."""
    if not netloc:
        return None
    if "@" in netloc:
        raise ConfigError(
            f"{name}: credentials do not belong in the URL's address; pass them as options"
        )
    bracketed = netloc.startswith("[")
    if bracketed:
        close = netloc.find("]")
        if close < 0:
            raise ConfigError(
                f"{name}: the URL's address {netloc!r} opens '[' without closing it; "
                f"accepted: {ADDRESS_ACCEPTED}"
            )
        host, after = netloc[1:close], netloc[close + 1 :]
        if after and not after.startswith(":"):
            raise ConfigError(
                f"{name}: the URL's address {netloc!r} has something other than ':PORT' "
                f"after ']'; accepted: {ADDRESS_ACCEPTED}"
            )
        port_text = after[1:] if after else None
    else:
        if netloc.count(":") > 1:
            raise ConfigError(
                f"{name}: the URL's address {netloc!r} has more than one ':' "
                f"(an IPv6 address goes in brackets); accepted: {ADDRESS_ACCEPTED}"
            )
        host, colon, port_text_ = netloc.partition(":")
        port_text = port_text_ if colon else None
    port = None if port_text is None else _port(name, port_text)
    if not host:
        raise ConfigError(
            f"{name}: the URL's address {netloc!r} has no host; accepted: {ADDRESS_ACCEPTED}"
        )
    try:
        decoded = urllib.parse.unquote(host, errors="strict")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{name}: the URL's host {host!r} is not valid UTF-8 once percent-decoded; "
            f"accepted: {ADDRESS_ACCEPTED}"
        ) from None
    normalised, problem = host_problem(decoded)
    if problem is None and bracketed != (":" in normalised):
        problem = (
            "is in brackets but is not an IPv6 address"
            if bracketed
            else "is an IPv6 address, which goes in brackets"
        )
    if problem is not None:
        raise ConfigError(
            f"{name}: the URL's host {decoded!r} {problem}; accepted: {ADDRESS_ACCEPTED}"
        )
    shown = f"[{normalised}]" if bracketed else normalised
    return shown if port is None else f"{shown}:{port}"


def _port(name: str, text: str) -> int:
    # The text is not quoted: in a mistyped "user:password/...@host" it is part of a secret.
    if text.isascii() and text.isdigit() and len(text) <= _MAX_PORT_DIGITS:
        port = int(text)
        if 1 <= port <= 65535:
            return port
    if not text:
        what = "is missing after ':'"
    elif text.isascii() and text.isdigit() and not text.strip("0"):
        what = "is 0, which is not a port (leave the port out to use the backend's default)"
    else:
        what = "is not a number in 1..65535"
    raise ConfigError(f"{name}: the URL's port {what}; accepted: {ADDRESS_ACCEPTED}")
