"""The Backend contract a plugin implements, and the options it declares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._contracts import Instancer, Registrar
from ._instance import Registration

__all__ = ["Backend", "Option"]

OPTION_TYPES: tuple[type, ...] = (str, int, float, bool, list)


@dataclass(frozen=True, slots=True)
class Option:
    """One option a backend accepts.

    ``type`` is ``str``, ``int``, ``float``, ``bool`` or ``list`` (a list of strings, given
    in a URL by repeating the query parameter). ``env`` names an environment variable the
    value is read from when not given; a ``secret`` value never appears in a repr, a log
    line or an error message, and surrounding whitespace is stripped from it (a token read
    from a file ends with a newline). ``min`` and ``max`` bound a number (floats must be
    finite); ``choices`` lists the values a string (or each item of a list) may take.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    secret: bool = False
    env: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(
                f"Option {self.name!r}: type must be one of str, int, float, bool, list; "
                f"got {self.type!r}"
            )
        if (self.min is not None or self.max is not None) and self.type not in (int, float):
            raise ValueError(f"Option {self.name!r}: min and max apply to int and float options")
        if self.choices is not None and self.type not in (str, list):
            raise ValueError(f"Option {self.name!r}: choices apply to str and list options")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def __repr__(self) -> str:
        default = "<secret>" if self.secret and self.default is not None else repr(self.default)
        return f"Option({self.name!r}, {self.type.__name__}, default={default})"


@runtime_checkable
class Backend(Protocol):
    """A discovery backend, registered by a plugin through ``register_backends``.

    ``options`` declares every keyword option the two factories accept. The plugin manager
    validates and converts what the user gave (keywords, URL query, environment) and calls
    the factory with every declared option, defaults filled in. A URL's ``host:port`` is the
    value of the option named ``address``, which a backend that talks to a server declares.
    A backend that cannot discover or cannot register says so with ``supports_discovery``
    / ``supports_registration``.
    """

    name: str
    description: str
    options: Sequence[Option]
    supports_discovery: bool
    supports_registration: bool

    def instancer(self, service: str, **options: Any) -> Instancer:
        """Watch ``service``; options are already validated and typed."""
        ...

    def registrar(self, registration: Registration, **options: Any) -> Registrar:
        """Announce ``registration``; options are already validated and typed."""
        ...
