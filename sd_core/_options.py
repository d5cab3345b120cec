"""Backend options: merge keywords, URL query and environment, convert to declared types.

Precedence: keyword > URL query > environment variable (``Option.env``) > default. Every
declared option is returned, so a backend factory receives all of them. The value of a
secret option never appears in an error message.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._backend import Backend, Option
from ._errors import ConfigError
from ._secrets import check_secret

__all__ = ["describe_option", "redacted", "resolve_options"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def describe_option(option: Option) -> str:
    """``name (type)`` or ``name (type, secret)``."""
    kind = f"{option.type.__name__}, secret" if option.secret else option.type.__name__
    return f"{option.name} ({kind})"


def _accepted(backend: Backend) -> str:
    if not backend.options:
        return f"the {backend.name} backend accepts no options"
    return "accepted options: " + ", ".join(describe_option(o) for o in backend.options)


def _show(option: Option, value: object) -> str:
    return "(value hidden: the option is secret)" if option.secret else repr(value)


_EXPECTED: dict[type, str] = {
    str: "a string",
    bool: "a boolean (1/0, true/false, yes/no, on/off)",
    int: "an integer",
    float: "a number",
    list: "a list of strings",
}


class _Invalid(ValueError):
    """A value that does not convert; the message is an addition to "must be <type>"."""


def _convert_one(kind: type, value: object) -> Any:
    if kind is str and isinstance(value, str):
        return value
    if kind is bool:
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


def _check_bounds(option: Option, value: Any) -> str | None:
    """Why ``value`` (already converted) is outside what ``option`` accepts, or None."""
    if option.type in (int, float):
        low, high = option.min, option.max
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                return f"must be between {low:g} and {high:g}"
            if low is not None:
                return f"must be at least {low:g}"
            return f"must be at most {high:g}"
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
    return _convert_one(option.type, value)


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
            default = option.default
            result[name] = list(default) if isinstance(default, list) else default
            continue
        try:
            converted = _convert(option, value)
        except _Invalid as exc:
            raise ConfigError(
                f"{backend.name}: option {name!r}{where} must be {_EXPECTED[option.type]}{exc}, "
                f"got {_show(option, value)}; {_accepted(backend)}"
            ) from None
        problem = _check_bounds(option, converted)
        if problem is not None:
            raise ConfigError(
                f"{backend.name}: option {name!r}{where} {problem}, got {_show(option, converted)}"
            )
        if option.secret and isinstance(converted, str):
            converted = check_secret(backend.name, name, converted)
        result[name] = converted
    return result


def redacted(backend: Backend, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the value of every secret option replaced, for logs and reprs."""
    secret = {option.name for option in backend.options if option.secret}
    return {
        name: "<secret>" if name in secret and value is not None else value
        for name, value in options.items()
    }
