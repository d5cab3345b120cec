"""The errors sd_core raises; every one derives from :class:`SDError`."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "NoEndpointsError",
    "RegistrationError",
    "RetryError",
    "SDError",
    "UnknownBackendError",
]


class SDError(Exception):
    """Base class of every error raised by sd_core and its plugins."""


class UnknownBackendError(SDError, LookupError):
    """No installed backend has the requested name."""


class NoEndpointsError(SDError):
    """No endpoint is available to serve a request."""


class BackendUnavailableError(SDError):
    """The backend could not be reached or did not answer in time."""


class RegistrationError(SDError):
    """A registration could not be made, kept or removed."""


class ConfigError(SDError, ValueError):
    """An option is unknown or has a value of the wrong type."""


class RetryError(ExceptionGroup[Exception], SDError):
    """Every attempt of a retried call failed; holds each attempt's error in order."""

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> RetryError:
        return super().__new__(cls, message, exceptions)
