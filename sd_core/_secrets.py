"""Secrets: values that never appear in a log line, an error message or a repr, in any form.

Every value of a secret option (see :class:`~sd_core.plugin.Option`) is recorded here when
options are resolved. :func:`scrub` replaces it in a text in every form it takes when other
code prints it: raw, as Python escapes it in a ``repr`` (``'tok\\n'``), as JSON escapes it,
and URL-quoted. :func:`scrub_error` does the same to an exception and the exceptions chained
to it, so that a traceback of an error the core raises or logs holds no secret either. The
loggers of the core and of plugins come from :func:`logger`, whose filter scrubs every record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import urllib.parse
from typing import ClassVar

from ._errors import ConfigError

__all__ = [
    "MIN_SCRUBBED",
    "REDACTED",
    "add_secret",
    "check_secret",
    "logger",
    "scrub",
    "scrub_error",
]

REDACTED = "<secret>"
MIN_SCRUBBED = 3
"""Shorter secrets are not searched for in text: replacing every "ab" would garble the logs."""


class _Known:
    """The secrets of this process and one pattern matching all their forms."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    secrets: ClassVar[set[str]] = set()
    pattern: ClassVar[re.Pattern[str] | None] = None


def _forms(value: str) -> set[str]:
    forms = {
        value,
        repr(value)[1:-1],
        ascii(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        repr(value.encode("utf-8", "surrogatepass"))[2:-1],
    }
    return {form for form in forms if len(form) >= MIN_SCRUBBED}


def add_secret(value: str) -> None:
    """Remember ``value`` as a secret of this process: :func:`scrub` hides it from now on."""
    if not isinstance(value, str) or len(value) < MIN_SCRUBBED:
        return
    with _Known.lock:
        if value in _Known.secrets:
            return
        _Known.secrets.add(value)
        forms = set().union(*(_forms(secret) for secret in _Known.secrets))
        alternatives = sorted(forms, key=len, reverse=True)
        _Known.pattern = re.compile("|".join(re.escape(form) for form in alternatives))


def scrub(text: str) -> str:
    """``text`` with every known secret, in any of its printed forms, replaced."""
    pattern = _Known.pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def _holds_secret(text: str) -> bool:
    pattern = _Known.pattern
    return pattern is not None and pattern.search(text) is not None


def scrub_error(error: BaseException) -> BaseException:
    """Scrub ``error`` and the exceptions chained to it, in place; returns ``error``.

    The arguments of an exception that prints a secret are replaced by their scrubbed text;
    an exception whose text still holds one (its ``__str__`` is computed some other way) is
    cut from the chain.
    """
    if _Known.pattern is None:
        return error
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _scrub_args(current)
        for link in ("__cause__", "__context__"):
            chained = getattr(current, link)
            if chained is None:
                continue
            _scrub_args(chained)
            if _holds_secret(_text(chained)):
                setattr(current, link, None)
                if link == "__context__":
                    current.__suppress_context__ = True
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return error


def _text(error: BaseException) -> str:
    try:
        return f"{error!s} {error!r}"
    except Exception:
        return ""


def _scrub_args(error: BaseException) -> None:
    if not any(isinstance(arg, str) and _holds_secret(arg) for arg in error.args) and not any(
        isinstance(arg, BaseException | bytes) for arg in error.args
    ):
        return
    args: list[object] = []
    for arg in error.args:
        if isinstance(arg, str):
            args.append(scrub(arg))
        elif isinstance(arg, bytes):
            args.append(scrub(arg.decode("utf-8", "replace")).encode())
        elif isinstance(arg, BaseException):
            args.append(scrub_error(arg))
        else:
            args.append(arg)
    with contextlib.suppress(AttributeError, TypeError):  # an exception with read-only args
        error.args = tuple(args)


def check_secret(owner: str, name: str, value: str) -> str:
    """A secret option's value with surrounding whitespace removed (a token read from a file
    ends with a newline); a value that still holds a control character is refused."""
    stripped = value.strip()
    if not stripped:
        raise ConfigError(f"{owner}: option {name!r} is empty (it is secret: its value is hidden)")
    bad = next((char for char in stripped if ord(char) < 32 or ord(char) == 127), None)
    if bad is not None:
        raise ConfigError(
            f"{owner}: option {name!r} holds a control character (U+{ord(bad):04X}) inside it; "
            f"accepted: printable characters (the value is hidden: the option is secret)"
        )
    add_secret(stripped)
    if stripped != value:
        add_secret(value)
    return stripped


class _ScrubFilter(logging.Filter):
    """Scrubs the message and the traceback of every record of the logger it is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _Known.pattern is None:
            return True
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            scrub_error(record.exc_info[1])
            if not record.exc_text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = _ScrubFilter()


def logger(name: str) -> logging.Logger:
    """The logger ``name`` with the secret-scrubbing filter on it (core and plugin modules use
    this instead of ``logging.getLogger``)."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log
