"""Balancers: pick one endpoint of an Endpointer per request."""

from .base import Balancer
from .consistent_hash import ConsistentHash
from .least_pending import LeastPending
from .random import Random
from .round_robin import RoundRobin
from .weighted import Weighted

__all__ = ["Balancer", "ConsistentHash", "LeastPending", "Random", "RoundRobin", "Weighted"]
