"""The ZooKeeper backend joins the conformance suite (pytest_sd.conformance)."""

from __future__ import annotations

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults
from pytest_sd.zookeeper import ZooKeeperServer


@pytest.fixture
def sd_conformance(zookeeper_server: ZooKeeperServer, sd_namespace: str) -> Conformance:
    return Conformance(
        backend="zookeeper",
        options={
            "address": zookeeper_server.address,
            "chroot": f"/{sd_namespace}",
            "timeout": 2.0,
            "session_timeout": 2.0,
        },
        # The liveness of a registration is the session: a dead process's nodes go when its
        # session times out (session_timeout, here the TTL the checks use). The status is
        # Spring Cloud Zookeeper's instance_status metadata; the zone its "zone" metadata.
        capabilities={
            "discovery",
            "registration",
            "tags",
            "meta",
            "weight",
            "zone",
            "process_death",
            "set_status",
            "restart",
            "restore",
            "pause",
        },
        faults=Faults.of(zookeeper_server),
        ttl=2.0,
        propagation=3.0,
        death_margin=3.0,
        # After a restart the client reconnects within a second; a wiped server makes it open
        # a new session, in which the node is created again.
        restore_within=8.0,
        recovery=5.0,
        up_status="UP",
        down_status="OUT_OF_SERVICE",
    )
