"""Client-side service discovery: contracts, machinery, balancers and backends."""

from ._backend import Backend, Option
from ._backoff import Backoff
from ._balance import Balancer, ConsistentHash, LeastPending, Random, RoundRobin, Weighted
from ._broadcast import BaseInstancer, Subscriber
from ._cache import EndpointCache
from ._contracts import Closer, Factory, Instancer, Registrar
from ._endpointer import Endpointer, FixedEndpointer
from ._errors import (
    BackendUnavailableError,
    ConfigError,
    NoEndpointsError,
    RegistrationError,
    RetryError,
    SDError,
    UnknownBackendError,
)
from ._event import Event
from ._fixed import FixedInstancer
from ._health import HealthChanges, RegistrarHealth, RegistrarState
from ._instance import Instance, Registration
from ._plugins import BackendInfo
from ._registrar import BaseRegistrar
from ._retry import aretry, retry
from ._selection import backends, instancer, registrar
from ._subscription import Subscription
from ._watch import Watch, WatchContext, WatchInstancer
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendUnavailableError",
    "Backoff",
    "Balancer",
    "BaseInstancer",
    "BaseRegistrar",
    "Closer",
    "ConfigError",
    "ConsistentHash",
    "EndpointCache",
    "Endpointer",
    "Event",
    "Factory",
    "FixedEndpointer",
    "FixedInstancer",
    "HealthChanges",
    "Instance",
    "Instancer",
    "LeastPending",
    "NoEndpointsError",
    "Option",
    "Random",
    "Registrar",
    "RegistrarHealth",
    "RegistrarState",
    "Registration",
    "RegistrationError",
    "RetryError",
    "RoundRobin",
    "SDError",
    "Subscriber",
    "Subscription",
    "UnknownBackendError",
    "Watch",
    "WatchContext",
    "WatchInstancer",
    "Weighted",
    "__version__",
    "aretry",
    "backends",
    "hookimpl",
    "instancer",
    "registrar",
    "retry",
]
