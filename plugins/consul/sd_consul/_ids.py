"""Which service ids and names the Consul agent round-trips, and the default service id.

Consul stores any string as a service id, but the calls that renew, read and remove a
service put its id in the URL path, and Consul 1.8's HTTP server cannot route every path:

* a character that Go's ``unicode.IsPrint`` rejects (control characters such as ``\\n``,
  ``\\t`` and NUL, DEL, and every Unicode space or format character but the ASCII space,
  e.g. U+00A0, U+200B, U+2028) makes the agent answer 400 to any path holding it, however
  it is escaped;
* a ``.`` or ``..`` path segment, or an empty one (a leading ``/``, ``//``), makes Go's
  router redirect (301) to the cleaned path, or the path names another endpoint (405, 404,
  500) — ``%2F`` does not help, the path is unescaped before routing;
* a request line over 1 MiB is refused (431).

Such an id registers (the definition travels in the body) but can then never be renewed,
read or deregistered, so it is refused before any request. Everything else round-trips once
quoted (py-consul escapes the path): ``?``, ``#``, ``%``, spaces, ``a/b``, ``a/``, ``..a``,
quotes, non-ASCII letters and emoji. Python's ``str.isprintable`` is the same test as Go's
``unicode.IsPrint`` (both accept Unicode categories L, M, N, P, S and the ASCII space).
"""

from __future__ import annotations

from sd_core import ConfigError, Registration

__all__ = ["MAX_ID_BYTES", "check_path_name", "default_service_id", "service_id_for"]

MAX_ID_BYTES = 65536
"""The longest id accepted, in UTF-8 bytes: even with every byte escaped (3 characters each)
its request line stays far below the agent's 1 MiB limit."""

ACCEPTED = (
    "accepted: printable characters (no control characters and no Unicode space or format "
    "character but the ASCII space), no '.' or '..' segment and no empty segment between "
    f"slashes (no leading '/' or '//'), at most {MAX_ID_BYTES} bytes in UTF-8"
)


def path_problem(value: str) -> str | None:
    """Why ``value`` cannot travel in a path of the agent's HTTP API, or None."""
    if not value:
        return "it is empty"
    bad = next((char for char in value if not char.isprintable()), None)
    if bad is not None:
        return (
            f"it holds U+{ord(bad):04X}, which is not printable "
            f"(the agent answers 400 to any path holding one)"
        )
    segments = value.split("/")
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            return f"it has a {segment!r} path segment (the agent's router rewrites the path)"
        if not segment and index < len(segments) - 1:
            return "it has an empty path segment: a leading '/' or '//' (the agent's router "
            "rewrites the path)"
    size = len(value.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return f"it is {size} bytes long in UTF-8"
    return None


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}…' ({len(value)} characters)"


def check_path_name(what: str, value: str) -> None:
    """Refuse (:class:`ConfigError`) a service name the agent cannot route."""
    problem = path_problem(value)
    if problem is not None:
        raise ConfigError(
            f"consul: {what} {_shown(value)} cannot be used with Consul: {problem}; {ACCEPTED}"
        )


def default_service_id(registration: Registration) -> str:
    """``<service>:<host>:<port>`` (an IPv6 host in brackets), the Consul service id of a
    registration that gave no id of its own."""
    return f"{registration.service}:{registration.address}"


def service_id_for(registration: Registration) -> str:
    """The Consul service id of ``registration``; :class:`ConfigError` if the agent could not
    renew or deregister it.

    Consul service ids are unique per agent, not per service, so the default id
    (``Registration.id`` left to ``host:port``) is qualified by the service name: ``api``
    and ``api-admin`` on the same ``host:port`` are two services, not one replacing the other.
    """
    check_path_name("Registration.service", registration.service)
    if registration.id == registration.address:
        service_id = default_service_id(registration)
        what = (
            f"the default service id {_shown(service_id)} "
            f"(<service>:<host>:<port>, as Registration.id was not given)"
        )
    else:
        service_id = registration.id
        what = f"Registration.id {_shown(service_id)}"
    problem = path_problem(service_id)
    if problem is not None:
        raise ConfigError(f"consul: {what} cannot be a Consul service id: {problem}; {ACCEPTED}")
    return service_id
