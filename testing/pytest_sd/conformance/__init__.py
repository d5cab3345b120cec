"""The backend conformance suite: one set of checks, which each backend's tests join.

A plugin joins with one test module (call it ``test_<backend>_conformance.py``: pytest
wants test module names unique across a run) that star-imports this module, which brings in
the checks and the fixture they use, and defines one fixture, ``sd_conformance``, describing
the backend::

    import pytest
    from pytest_sd.conformance import *  # noqa: F403
    from pytest_sd.conformance import Conformance, Faults
    from pytest_sd.consul import ConsulServer


    @pytest.fixture
    def sd_conformance(consul_server: ConsulServer) -> Conformance:
        return Conformance(
            backend="consul",
            options={"address": consul_server.address, "timeout": 2.0},
            capabilities={"discovery", "registration", "tags", "meta", "restart", "restore"},
            faults=Faults.of(consul_server),
            ttl=2.0,
        )

No core file changes when a plugin joins. A check that needs a capability the backend does
not declare is skipped, and that is the only way a check is skipped (apart from a missing
server, which the server fixtures skip, or fail under ``CI=true``). :class:`Conformance`,
:class:`Faults` and :data:`CAPABILITIES` come from ``sd_core`` (they need no pytest).
"""

from sd_core._conformance import CAPABILITIES, Conformance, Faults

from . import suite
from .suite import *  # noqa: F403

__all__ = ["CAPABILITIES", "Conformance", "Faults"]
__all__ += suite.__all__
