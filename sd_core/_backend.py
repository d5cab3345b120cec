"""The Backend contract a plugin implements, and the options it declares."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._contracts import Instancer, Registrar
from ._instance import Registration

__all__ = [
    "DURATION_FORMS",
    "Backend",
    "Duration",
    "Option",
    "format_duration",
    "parse_duration",
    "type_name",
]

DURATION_FORMS = (
    "a number of seconds (30, 2.5) or numbers with units, Go-style: 500ms, 10s, 1.5s, 1m30s, 1h "
    "(units ns, us, ms, s, m, h)"
)
"""What a duration may be, as error messages say it."""

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SECONDS = re.compile(_NUMBER)
_GO_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_TOKEN = re.compile(rf"({_NUMBER})([^0-9.]*)")
_NANOSECOND_UNITS = (
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
)


class DurationError(ValueError):
    """A value that is not a duration; ``reason`` says why in a few words (or is empty)."""

    def __init__(self, value: object, reason: str = "") -> None:
        self.reason = reason
        because = f" ({reason})" if reason else ""
        super().__init__(f"{value!r} is not a duration{because}; accepted: {DURATION_FORMS}")


def _why_not(text: str) -> str:
    """Why ``text`` (stripped, not a duration) is not one, in a few words, or ""."""
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            return ""
        unit = match.group(2)
        if not unit:
            return f"{match.group(1)} has no unit" if position else ""
        if unit not in _UNITS:
            return f"unknown unit {unit!r}" if unit.strip() == unit else "spaces inside"
        position = match.end()
    return ""


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number of seconds (int, float or a plain number string such as
    ``"2.5"``), a Go-style duration string (``"500ms"``, ``"1m30s"``, units ns, us/µs, ms, s,
    m, h) or a :class:`datetime.timedelta`. Negative, NaN, infinite or anything else raises
    :class:`DurationError` (a ValueError) whose ``reason`` says why."""
    seconds: float
    if isinstance(value, bool):
        raise DurationError(value, "a boolean")
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise DurationError(value, "too long") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise DurationError(value, "negative")
        if _SECONDS.fullmatch(text):
            seconds = float(text)
        elif _GO_DURATION.fullmatch(text):
            seconds = sum(float(number) * _UNITS[unit] for number, unit in _TOKEN.findall(text))
        elif text.lower() in {"inf", "+inf", "infinity", "+infinity"}:
            raise DurationError(value, "not finite")
        elif text.lower() == "nan":
            raise DurationError(value, "not a number")
        else:
            raise DurationError(value, _why_not(text) if text else "empty")
    else:
        raise DurationError(value, f"a {type(value).__name__}")
    if math.isnan(seconds):
        raise DurationError(value, "not a number")
    if math.isinf(seconds):
        raise DurationError(value, "not finite" if not isinstance(value, str) else "too long")
    if seconds < 0:
        raise DurationError(value, "negative")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as a Go duration string, exact to the nanosecond: ``"1m30s"``, ``"500ms"``,
    ``"2h"``, ``"0s"`` (as Go's ``time.ParseDuration`` and Consul read them). ValueError for a
    negative or non-finite number."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"format_duration needs a finite number >= 0, got {seconds!r}")
    nanoseconds = round(seconds * 1e9)
    if nanoseconds < 1_000_000_000:  # below a second: the largest unit that fits, as Go does
        for unit, size in _NANOSECOND_UNITS[3:]:
            if nanoseconds >= size or unit == "ns":
                return _decimal(nanoseconds, size) + unit if nanoseconds else "0s"
    hours, left = divmod(nanoseconds, 3_600_000_000_000)
    minutes, left = divmod(left, 60_000_000_000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(_decimal(left, 1_000_000_000) + "s" if left else "")
    return "".join(parts)


def _decimal(count: int, size: int) -> str:
    """``count / size`` written exactly, without trailing zeros: 1500, 1000 -> ``"1.5"``."""
    whole, fraction = divmod(count, size)
    if not fraction:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


class Duration:
    """Marker type of a duration option: ``Option("wait", Duration, "30s", min=1, max=600)``.

    A duration is given as a number of seconds (int or float, or a string such as ``"2.5"``),
    as a Go-style string (``"500ms"``, ``"10s"``, ``"1m30s"``, ``"1.5h"``; units ns, us/µs,
    ms, s, m, h, combined) or as a :class:`datetime.timedelta`; the factory receives a
    ``float`` of seconds. ``min`` and ``max`` are seconds. Negative, NaN and infinite values
    are refused, except that an option declared ``never=True`` also takes ``"never"`` (or an
    empty string), which it receives as ``math.inf``. The default may be a string or a number.
    ``Duration.parse`` and ``Duration.format`` convert both ways (format: Go-style, for
    servers that read Go durations).
    """

    __slots__ = ()

    parse = staticmethod(parse_duration)
    format = staticmethod(format_duration)


OPTION_TYPES: tuple[type, ...] = (str, int, float, bool, list, Duration)
_NUMERIC: tuple[type, ...] = (int, float, Duration)
NEVER_WORDS = frozenset({"never", ""})
"""What a ``never=True`` duration option takes for "never" (any case, spaces stripped)."""


def type_name(kind: type) -> str:
    """How an option type is written for people: ``str``, ``float``, ..., ``duration``."""
    return "duration" if kind is Duration else kind.__name__


def duration_value(option: Option, value: object) -> float:
    """``value`` as the seconds of duration ``option`` (``math.inf`` for "never" where the
    option allows it); :class:`DurationError` otherwise."""
    if option.never:
        if isinstance(value, str) and value.strip().lower() in NEVER_WORDS:
            return math.inf
        if isinstance(value, float) and value == math.inf:
            return math.inf
    return parse_duration(value)


@dataclass(frozen=True, slots=True)
class Option:
    """One option a backend accepts.

    ``type`` is ``str``, ``int``, ``float``, ``bool``, ``list`` (a list of strings, given in a
    URL by repeating the query parameter) or :class:`Duration` (seconds, as a float). ``env``
    names an environment variable the value is read from when not given; a ``secret`` value
    never appears in a repr, a log line or an error message, and surrounding whitespace is
    stripped from it (a token read from a file ends with a newline). ``min`` and ``max``
    bound a number or a duration (in seconds; floats must be finite); ``choices`` lists the
    values a string (or each item of a list) may take. ``connection`` marks the options that
    say how to reach the server (address, TLS, credentials, timeout: see
    ``connection_options``). ``never`` lets a duration option take ``"never"``, received as
    ``math.inf``.
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
    connection: bool = False
    never: bool = False

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(
                f"Option {self.name!r}: type must be one of str, int, float, bool, list, "
                f"Duration; got {self.type!r}"
            )
        if (self.min is not None or self.max is not None) and self.type not in _NUMERIC:
            raise ValueError(
                f"Option {self.name!r}: min and max apply to int, float and Duration options"
            )
        if self.choices is not None and self.type not in (str, list):
            raise ValueError(f"Option {self.name!r}: choices apply to str and list options")
        if self.never and self.type is not Duration:
            raise ValueError(f"Option {self.name!r}: never applies to Duration options")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.type is Duration and any(
            bound is not None and not (math.isfinite(bound) and bound >= 0)
            for bound in (self.min, self.max)
        ):
            raise ValueError(f"Option {self.name!r}: min and max of a duration are seconds >= 0")
        if self.type is Duration and self.default is not None:
            try:
                seconds = duration_value(self, self.default)
            except DurationError as exc:
                raise ValueError(f"Option {self.name!r}: the default {exc}") from None
            low, high = self.min, self.max
            if not (seconds == math.inf and self.never) and (
                (low is not None and seconds < low) or (high is not None and seconds > high)
            ):
                raise ValueError(f"Option {self.name!r}: the default is outside min..max")

    @property
    def type_name(self) -> str:
        """The type as written for people: ``str``, ..., ``list``, ``duration``."""
        return type_name(self.type)

    def __repr__(self) -> str:
        default = "<secret>" if self.secret and self.default is not None else repr(self.default)
        return f"Option({self.name!r}, {self.type_name}, default={default})"


@runtime_checkable
class Backend(Protocol):
    """A discovery backend, registered by a plugin through ``register_backends``.

    ``options`` declares every keyword option the two factories accept. The plugin manager
    validates and converts what the user gave (keywords, URL query, environment) and calls
    the factory with every declared option, defaults filled in. A factory called directly
    gets the same treatment by calling ``sd_core.plugin.resolve_for(self, options)`` first.
    A URL's ``host:port`` is the value of the option named ``address``, which a backend that
    talks to a server declares (``connection_options`` declares it with TLS, credentials and
    timeout). A backend that cannot discover or cannot register says so with
    ``supports_discovery`` / ``supports_registration``. An optional ``aliases`` attribute (a
    sequence of names, e.g. ``("zk",)``) lets users select it by other names too.
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
