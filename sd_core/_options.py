"""Backend options: merge keywords, URL query and environment, convert to declared types.

Precedence: keyword > URL query > environment variable (``Option.env``) > default. Every
declared option is returned, so a backend factory receives all of them. The value of a
secret option never appears in an error message. :func:`resolve_for` is the same resolution
for a backend factory called directly (not through ``sd_core.instancer`` / ``registrar``).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from ._backend import (
    DURATION_FORMS,
    Backend,
    Duration,
    DurationError,
    Option,
    duration_value,
    format_duration,
)
from ._errors import ConfigError
from ._secrets import add_secret, check_secret, scrub

__all__ = ["describe_option", "redacted", "resolve_for", "resolve_options"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#\s]*)@")  # to the last @


def _hide_url_passwords(value: object) -> None:
    """Record the password of each URL in an option's value (``http://user:password@host``,
    as Spring's Eureka ``defaultZone`` carries it) as a secret, before anything prints it."""
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, str):
            for match in _URL_USERINFO.finditer(item):
                _, colon, password = match.group(1).partition(":")
                if colon and password:
                    add_secret(password)
                    add_secret(urllib.parse.unquote(password))


def describe_option(option: Option) -> str:
    """``name (type)`` or ``name (type, secret)``."""
    kind = f"{option.type_name}, secret" if option.secret else option.type_name
    return f"{option.name} ({kind})"


def _accepted(backend: Backend) -> str:
    if not backend.options:
        return f"the {backend.name} backend accepts no options"
    return "accepted options: " + ", ".join(describe_option(o) for o in backend.options)


def _show(option: Option, value: object) -> str:
    # Scrubbed: a value may hold a URL whose password _hide_url_passwords recorded.
    return "(value hidden: the option is secret)" if option.secret else scrub(repr(value))


_EXPECTED: dict[type, str] = {
    str: "a string",
    bool: "a boolean (1/0, true/false, yes/no, on/off)",
    int: "an integer",
    float: "a number",
    list: "a list of strings",
    Duration: f"a duration ({DURATION_FORMS})",
}


class _Invalid(ValueError):
    """A value that does not convert; the message is an addition to "must be <type>" and
    ``why`` one to "got <value>"."""

    def __init__(self, message: str = "", why: str = "") -> None:
        super().__init__(message)
        self.why = why


def _convert_one(option: Option, value: object) -> Any:
    kind = option.type
    if kind is str:
        if isinstance(value, os.PathLike):  # a file name given as a Path
            value = os.fspath(value)
        if isinstance(value, str):
            return value
    elif kind is Duration:
        try:
            return duration_value(option, value)
        except DurationError as exc:
            # The reason may quote part of the value ("unknown unit 'x'"): not for a secret.
            why = f" ({exc.reason})" if exc.reason and not option.secret else ""
            raise _Invalid(" or never" if option.never else "", why) from None
    elif kind is bool:
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif kind is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value.strip())
        if number is not None:
            if not math.isfinite(number):
                raise _Invalid(" (a finite one)")
            return number
    raise _Invalid("")


def _bound(option: Option, bound: float | None) -> str:
    if bound is None:
        return ""
    return format_duration(bound) if option.type is Duration else f"{bound:g}"


def _check_bounds(option: Option, value: Any) -> str | None:
    """Why ``value`` (already converted) is outside what ``option`` accepts, or None."""
    if option.type in (int, float, Duration):
        if option.never and value == math.inf:
            return None
        low, high = option.min, option.max
        if (low is not None and value < low) or (high is not None and value > high):
            never = " (or never)" if option.never else ""
            if low is not None and high is not None:
                return f"must be between {_bound(option, low)} and {_bound(option, high)}{never}"
            if low is not None:
                return f"must be at least {_bound(option, low)}{never}"
            return f"must be at most {_bound(option, high)}{never}"
    if option.choices is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in option.choices:
                return f"must be one of {', '.join(option.choices)}"
    return None


def _convert(option: Option, value: object) -> Any:
    if option.type is list:
        items: list[object]
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, frozenset | set):
            items = sorted(value)
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise _Invalid("")
        if not all(isinstance(item, str) for item in items):
            raise _Invalid("")
        return items
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise _Invalid(f" (it was given {len(value)} times)")
        value = value[0]
    return _convert_one(option, value)


def _from_env(option: Option, raw: str) -> object:
    if option.type is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def resolve_options(
    backend: Backend,
    *,
    keywords: Mapping[str, object],
    query: Mapping[str, Sequence[str]],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Every option ``backend`` declares, converted to its type, with defaults filled in.

    ``keywords`` are the caller's (a None value counts as not given); ``query`` maps a URL's
    query parameters to their values in order; ``environ`` is read for ``Option.env``. An
    unknown option, or a value that does not convert, raises :class:`ConfigError`.
    """
    declared = {option.name: option for option in backend.options}
    for given in [*keywords.values(), *query.values()]:
        _hide_url_passwords(given)
    for option in declared.values():
        if option.env and environ.get(option.env):
            _hide_url_passwords(environ[option.env])
    for source, names in (("", keywords), (" in the URL", query)):
        for name in names:
            if name not in declared:
                close = difflib.get_close_matches(name, declared, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{backend.name}: unknown option {name!r}{source}{hint}; {_accepted(backend)}"
                )
    result: dict[str, Any] = {}
    for name, option in declared.items():
        value: object
        if keywords.get(name) is not None:
            value, where = keywords[name], ""
        elif name in query:
            values = list(query[name])
            value = values[0] if option.type is not list and len(values) == 1 else values
            where = " in the URL"
        elif option.env and environ.get(option.env):
            value = _from_env(option, environ[option.env])
            where = f" from environment variable {option.env}"
        else:
            result[name] = _default(option)
            continue
        try:
            converted = _convert(option, value)
        except _Invalid as exc:
            raise ConfigError(
                f"{backend.name}: option {name!r}{where} must be {_EXPECTED[option.type]}{exc}, "
                f"got {_show(option, value)}{exc.why}; {_accepted(backend)}"
            ) from None
        problem = _check_bounds(option, converted)
        if problem is not None:
            shown = value if option.type is Duration else converted
            raise ConfigError(
                f"{backend.name}: option {name!r}{where} {problem}, got {_show(option, shown)}"
            )
        if option.secret and isinstance(converted, str):
            converted = check_secret(backend.name, name, converted)
        result[name] = converted
    return result


def _default(option: Option) -> Any:
    default = option.default
    if isinstance(default, list):
        return list(default)
    if option.type is Duration and default is not None:
        return duration_value(option, default)  # checked when the Option was made
    return default


def resolve_for(
    backend: Backend, options: Mapping[str, object], *, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The options a factory of ``backend`` works with, from the keywords it was called with.

    Through ``sd_core.instancer`` / ``registrar`` a factory receives options already resolved
    (every declared option, typed, defaults filled in); called directly
    (``ConsulBackend().instancer("web", wait=5)``) it receives what its caller wrote. Calling
    this first at every entry point treats both alike: the same conversion, bounds, choices,
    secrets and environment variables (``environ``, default ``os.environ``), and the same
    :class:`ConfigError` as ``sd_core.instancer()``. Resolving resolved options changes
    nothing.
    """
    return resolve_options(
        backend,
        keywords=options,
        query={},
        environ=os.environ if environ is None else environ,
    )


def redacted(backend: Backend, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the value of every secret option replaced, for logs and reprs."""
    secret = {option.name for option in backend.options if option.secret}
    return {
        name: "<secret>" if name in secret and value is not None else value
        for name, value in options.items()
    }
