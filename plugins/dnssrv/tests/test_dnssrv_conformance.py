"""The dnssrv backend joins the conformance suite (pytest_sd.conformance) against BIND 9,
registering by RFC 2136 dynamic updates signed with the server's TSIG key."""

from __future__ import annotations

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults
from pytest_sd.dns import BindServer

from sd_core import Instance


def registered_id(instance: Instance) -> str:
    """The Registration.id of an instance: the first label of its SRV target, which the
    registrar names ``<id>.<service>.<zone>`` (conformance ids are already DNS labels)."""
    return instance.meta["target"].split(".", 1)[0]


@pytest.fixture
def sd_conformance(bind_server: BindServer, monkeypatch: pytest.MonkeyPatch) -> Conformance:
    # The secret comes from the environment, so that the secret check can pass it as a
    # keyword (which wins over the environment) beside the same options.
    monkeypatch.setenv("SD_DNSSRV_KEY_SECRET", bind_server.tsig_secret)
    return Conformance(
        backend="dnssrv",
        options={
            "address": bind_server.address,
            "domain": bind_server.zone,
            "key_name": bind_server.tsig_key_name,
            "key_algorithm": bind_server.tsig_algorithm,
            "timeout": 1.0,
            "min_refresh": 0.2,
            "max_refresh": 1.0,
            "retry_max": 1.0,
        },
        # No tags, meta, zone or health in an SRV record; and no process_death: a record
        # outlives the process that published it (its TTL bounds caching, not existence).
        capabilities={
            "discovery",
            "registration",
            "weight",
            "restart",
            "restore",
            "pause",
            "secret",
        },
        faults=Faults.of(bind_server),
        secret_options={"key_secret": bind_server.tsig_secret},
        ttl=2.0,
        propagation=3.0,
        recovery=3.0,
        registered_id=registered_id,
    )
