"""pytest-sd: real service-discovery servers for tests, and the backend conformance suite.

* :mod:`pytest_sd.plugin` -- the pytest plugin (entry point ``sd``): fixtures that start real
  Consul, etcd, ZooKeeper, BIND, dnsmasq and Eureka servers on loopback ports, with fault
  handles (``consul_server``, ``etcd_server``, ``sd_namespace``…).
* :mod:`pytest_sd.consul`, :mod:`~pytest_sd.etcd`, :mod:`~pytest_sd.zookeeper`,
  :mod:`~pytest_sd.dns`, :mod:`~pytest_sd.eureka` -- the server classes, usable without pytest.
* :func:`wait_for_event`, :func:`wait_for_event_async`, :class:`RegisteringChild` -- helpers
  for tests of what discovers and registers through them.
* :mod:`pytest_sd.conformance` -- the conformance suite a backend plugin joins with one fixture.
"""

from .events import wait_for_event, wait_for_event_async
from .registering_child import RegisteringChild

__all__ = ["RegisteringChild", "wait_for_event", "wait_for_event_async"]
