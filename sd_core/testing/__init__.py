"""Real backend servers for tests, started on loopback ports (a pytest plugin), and helpers
for testing what discovers and registers through them."""

from .events import wait_for_event, wait_for_event_async
from .registering_child import RegisteringChild

__all__ = ["RegisteringChild", "wait_for_event", "wait_for_event_async"]
