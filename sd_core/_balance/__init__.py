"""Balancers: pick one endpoint of an Endpointer per request."""

from .base import Balancer
from .consistent_hash import ConsistentHash
from .ejecting import Ejecting
from .least_pending import LeastPending
from .peak_ewma import PeakEwma
from .random import Random
from .rfc2782 import PriorityWeighted
from .round_robin import RoundRobin
from .weighted import Weighted

__all__ = [
    "Balancer",
    "ConsistentHash",
    "Ejecting",
    "LeastPending",
    "PeakEwma",
    "PriorityWeighted",
    "Random",
    "RoundRobin",
    "Weighted",
]
