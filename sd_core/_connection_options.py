"""The options that say how to reach a server, declared once for every backend.

Every backend that talks to a server needs one or several addresses, TLS (``ca``, ``cert``,
``key``, ``verify``), credentials (``username`` / ``password``, or a ``token``) and a
``timeout``. :func:`connection_options` declares them, with the backend's own environment
variables; :func:`parse_address` / :func:`parse_addresses` read an address option and
:func:`tls_settings` the TLS options, with the same rules and messages in every backend.
"""

from __future__ import annotations

import os
import ssl
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Duration, Option
from ._errors import ConfigError
from ._instance import HOST_ACCEPTED, host_problem

__all__ = [
    "CONNECTION_OPTION_NAMES",
    "Address",
    "TLSSettings",
    "connection_options",
    "parse_address",
    "parse_addresses",
    "tls_settings",
]

CONNECTION_OPTION_NAMES = (
    "address",
    "username",
    "password",
    "token",
    "ca",
    "cert",
    "key",
    "verify",
    "timeout",
)
"""Every option :func:`connection_options` may declare, in the order it declares them."""

TIMEOUT_MIN = 0.01
TIMEOUT_MAX = 600.0
_NOTHING: Mapping[str, str] = types.MappingProxyType({})


def connection_options(
    *,
    default_address: str | None,
    addresses: bool = False,
    tls: bool = True,
    token: bool = False,
    username_password: bool = False,
    timeout: float | str = "10s",
    env: Mapping[str, str] = _NOTHING,
    helps: Mapping[str, str] = _NOTHING,
    server: str = "the server",
) -> tuple[Option, ...]:
    """The connection options of a backend, each marked ``connection=True``.

    - ``address`` (str; with ``addresses=True`` a list: several addresses, comma-separated or
      repeated), default ``default_address`` (None: the user must give one);
    - ``username`` (str) and ``password`` (secret) with ``username_password=True``;
    - ``token`` (secret) with ``token=True``;
    - ``ca``, ``cert``, ``key`` (file names) and ``verify`` (bool, default true) with
      ``tls=True``;
    - ``timeout`` (duration, 10 ms to 10 min), default ``timeout``.

    ``env`` maps option names to the backend's environment variables
    (``{"address": "CONSUL_HTTP_ADDR", "token": "CONSUL_HTTP_TOKEN"}``), ``helps`` replaces
    the help text of some, and ``server`` names the server in the help texts ("the agent").
    Read the values with :func:`parse_address` / :func:`parse_addresses` and
    :func:`tls_settings`.
    """
    several = "; several: comma-separated or repeated" if addresses else ""
    declared: list[tuple[str, type, Any, str, bool]] = [
        (
            "address",
            list if addresses else str,
            ([default_address] if default_address else []) if addresses else default_address,
            f"{server}'s address: host:port, [IPv6]:port, host (default port) "
            f"or scheme://host:port{several}",
            False,
        )
    ]
    if username_password:
        declared += [
            ("username", str, None, f"user name to authenticate to {server}", False),
            ("password", str, None, "password of the user", True),
        ]
    if token:
        declared.append(("token", str, None, f"token sent to {server} on every call", True))
    if tls:
        declared += [
            ("ca", str, None, f"CA bundle (PEM file) that verifies {server}'s certificate", False),
            ("cert", str, None, "client certificate (PEM file) for mutual TLS", False),
            ("key", str, None, "private key (PEM file) of the client certificate", False),
            ("verify", bool, True, f"verify {server}'s certificate (false: tests only)", False),
        ]
    names = {name for name, *_ in declared} | {"timeout"}
    for what, given in (("env", env), ("helps", helps)):
        unknown = sorted(set(given) - names)
        if unknown:
            known = ", ".join(name for name in CONNECTION_OPTION_NAMES if name in names)
            raise ValueError(
                f"connection_options: {what} names {', '.join(unknown)}, which are not "
                f"declared (declared: {known})"
            )
    options = [
        Option(
            name,
            kind,
            default,
            helps.get(name, text),
            secret=secret,
            env=env.get(name),
            connection=True,
        )
        for name, kind, default, text, secret in declared
    ]
    options.append(
        Option(
            "timeout",
            Duration,
            timeout,
            helps.get("timeout", f"how long to wait to connect to {server} or for its answer"),
            env=env.get("timeout"),
            min=TIMEOUT_MIN,
            max=TIMEOUT_MAX,
            connection=True,
        )
    )
    return tuple(options)


class Address(NamedTuple):
    """A server address: ``host`` (an IPv6 address without brackets, with its %zone if
    any), ``port`` and the ``scheme`` it was given with (None when it named none)."""

    host: str
    port: int
    scheme: str | None = None

    @property
    def netloc(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, default_scheme: str = "http") -> str:
        """``scheme://host:port``; an IPv6 zone is written %25zone, as URLs write it."""
        host = self.host.replace("%", "%25")
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme or default_scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}" if self.scheme else self.netloc


def _forms(default_port: int | Mapping[str, int] | None, schemes: Collection[str]) -> str:
    """The accepted forms of an address, as error messages say them."""
    forms = ["host:port", "[IPv6]:port"]
    if isinstance(default_port, int):
        forms.append(f"host (port {default_port})")
    elif default_port is not None:
        ports = ", ".join(f"{port} for {scheme}" for scheme, port in default_port.items())
        forms.append(f"host (port {ports})")
    forms += [f"{scheme}://host:port" for scheme in schemes]
    return (
        f"{', '.join(forms[:-1])} or {forms[-1]}, where host is {HOST_ACCEPTED}, "
        f"and port is a number in 1..65535"
    )


def parse_address(
    text: str,
    default_port: int | Mapping[str, int] | None,
    *,
    schemes: Collection[str] = ("http", "https"),
    default_scheme: str | None = None,
    backend: str = "",
    option: str = "address",
) -> Address:
    """The :class:`Address` in ``text``: ``host:port``, ``[IPv6]:port`` (a zone written
    ``%zone`` or ``%25zone``), ``host`` or ``scheme://host:port`` (one of ``schemes``; none
    accepted when it is empty), surrounding spaces and one trailing ``/`` ignored.

    ``default_port`` is the port of an address without one: a number, a mapping from scheme
    to port (the address's scheme, else ``default_scheme``), or None when the port is
    required. Anything else -- port 0, a bad host, an unbracketed IPv6 address, a path,
    credentials (never shown) -- raises :class:`ConfigError` naming ``backend``, the option,
    what is wrong and the accepted forms.
    """
    owner = f"{backend}: " if backend else ""
    forms = _forms(default_port, schemes)

    def bad(why: str, *, show: bool = True) -> ConfigError:
        got = f", got {text!r}" if show else ""
        return ConfigError(f"{owner}option {option} {why}{got}; accepted: {forms}")

    if not isinstance(text, str):
        raise ConfigError(f"{owner}option {option} must be a string, got a {type(text).__name__}")
    raw = text.strip()
    if "@" in raw:  # user:password@host: never echo it
        raise bad("holds credentials, which do not belong in it (the value is hidden)", show=False)
    scheme: str | None = None
    rest = raw
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        scheme = scheme.lower()
        if not schemes:
            raise bad(f"takes no scheme, but {scheme}:// was given")
        if scheme not in schemes:
            raise bad(f"has scheme {scheme}://, which is not " + " or ".join(schemes))
    if rest.endswith("/"):
        rest = rest[:-1]
    if not rest:
        raise bad("names no host")
    if any(char in rest for char in "/?#"):
        raise bad("has a path, a query or a fragment, which an address does not take")
    port_text: str | None
    if rest.startswith("["):
        inside, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise bad("opens '[' without closing it")
        host_text = "[" + inside.replace("%25", "%") + "]"  # a zone as URLs write it (RFC 6874)
        if after and not after.startswith(":"):
            raise bad("has something other than :port after ']'")
        port_text = after[1:] if after else None
    elif rest.count(":") > 1:
        raise bad("has an IPv6 address outside brackets: write it [::1]:port")
    else:
        host_text, colon, after = rest.partition(":")
        port_text = after if colon else None
        if not host_text:
            raise bad("names no host")
    host, problem = host_problem(host_text)
    if problem is not None:
        raise bad(f"has a bad host: {host_text!r} {problem}")
    port = _port(port_text, default_port, scheme or default_scheme, bad)
    return Address(host, port, scheme)


def _port(
    text: str | None,
    default_port: int | Mapping[str, int] | None,
    scheme: str | None,
    bad: Callable[[str], ConfigError],
) -> int:
    if text is None:
        if default_port is None:
            raise bad("has no port (host:port)")
        if isinstance(default_port, int):
            return default_port
        if scheme is None or scheme not in default_port:
            raise ValueError(f"parse_address: no default port for scheme {scheme!r}")
        return default_port[scheme]
    if not text:
        raise bad("has no port after ':'")
    if not text.isascii() or not text.isdigit():
        raise bad(f"has port {text!r}, which is not a number")
    port = int(text)
    if port == 0:
        default = "leave the port out for that" if default_port is not None else "give the port"
        raise bad(f"has port 0, which does not mean the default port: {default}")
    if port > 65535:
        raise bad(f"has port {port}, which is out of range")
    return port


def parse_addresses(
    values: str | Iterable[str] | None,
    default_port: int | Mapping[str, int] | None,
    *,
    schemes: Collection[str] = ("http", "https"),
    default_scheme: str | None = None,
    backend: str = "",
    option: str = "address",
) -> tuple[Address, ...]:
    """Every :class:`Address` in ``values`` (one string or several, each comma-separated),
    in order, each once; none at all is a :class:`ConfigError`. Each is read by
    :func:`parse_address`."""
    items = [values] if isinstance(values, str) or values is None else list(values)
    found: dict[Address, None] = {}
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            raise ConfigError(
                f"{backend + ': ' if backend else ''}option {option} must be strings, "
                f"got a {type(item).__name__}"
            )
        for part in item.split(","):
            if part.strip():
                address = parse_address(
                    part,
                    default_port,
                    schemes=schemes,
                    default_scheme=default_scheme,
                    backend=backend,
                    option=option,
                )
                found[address] = None
    if not found:
        raise ConfigError(
            f"{backend + ': ' if backend else ''}option {option} names no address; "
            f"accepted: {_forms(default_port, schemes)}"
            + ("; several: comma-separated or repeated" if not isinstance(values, str) else "")
        )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The TLS options, checked: file names of the CA bundle, the client certificate and its
    key (each None when not given), and whether to verify the server's certificate."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    @property
    def verify_arg(self) -> bool | str:
        """``verify`` as requests and httpx take it: False, True or the CA bundle's name."""
        if not self.verify:
            return False
        return self.ca or True

    @property
    def cert_arg(self) -> str | tuple[str, str] | None:
        """``cert`` as requests and httpx take it: the certificate, or (certificate, key)."""
        if self.cert and self.key:
            return (self.cert, self.key)
        return self.cert

    def ssl_context(self) -> ssl.SSLContext:
        """A client :class:`ssl.SSLContext` with these settings."""
        context = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The contents of the CA bundle, the certificate and the key (None if not given),
        for clients that take bytes (gRPC)."""

        def content(name: str | None) -> bytes | None:
            if name is None:
                return None
            with open(name, "rb") as file:
                return file.read()

        return content(self.ca), content(self.cert), content(self.key)


def tls_settings(options: Mapping[str, Any], *, backend: str = "") -> TLSSettings:
    """The :class:`TLSSettings` of resolved options (``ca``, ``cert``, ``key``, ``verify``;
    missing ones take their defaults). ``key`` needs ``cert``; each file given must be a
    readable file (``~`` is expanded). Else :class:`ConfigError` naming the option."""
    owner = f"{backend}: " if backend else ""
    if options.get("key") and not options.get("cert"):
        raise ConfigError(f"{owner}option key needs option cert (the client certificate)")
    files: dict[str, str | None] = {}
    for name in ("ca", "cert", "key"):
        value = options.get(name)
        if value is None or value == "":
            files[name] = None
            continue
        path = os.path.expanduser(os.fspath(value))
        if not os.path.isfile(path):
            what = "does not exist" if not os.path.exists(path) else "is not a file"
            raise ConfigError(f"{owner}option {name} names {path!r}, which {what}")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{owner}option {name} names {path!r}, which cannot be read")
        files[name] = path
    verify = options.get("verify")
    return TLSSettings(
        ca=files["ca"],
        cert=files["cert"],
        key=files["key"],
        verify=True if verify is None else bool(verify),
    )
