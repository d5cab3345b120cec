"""Client-side service discovery: values, instancers, registrars, endpointers, balancers, retry
and the selection of backends. What plugin authors build on is in :mod:`sd_core.plugin`."""

from ._balance import (
    Balancer,
    ConsistentHash,
    Ejecting,
    LeastPending,
    PeakEwma,
    PriorityWeighted,
    Random,
    RoundRobin,
    Weighted,
)
from ._broadcast import Subscriber
from ._cache import Candidate, EndpointCache
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
from ._retry import aretry, retry
from ._selection import backends, instancer, registrar
from ._subscription import Subscription
from ._version import __version__

__all__ = [
    "BackendInfo",
    "BackendUnavailableError",
    "Balancer",
    "Candidate",
    "Closer",
    "ConfigError",
    "ConsistentHash",
    "Ejecting",
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
    "PeakEwma",
    "PriorityWeighted",
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
    "Weighted",
    "__version__",
    "aretry",
    "backends",
    "instancer",
    "registrar",
    "retry",
]
