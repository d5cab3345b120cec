"""Digest auth and the ACLs of the nodes a registrar creates; secrets kept out of sight."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.security import (  # type: ignore[import-untyped]
    READ_ACL_UNSAFE,
    make_digest_acl_credential,
)
from pytest_sd.zookeeper import ZooKeeperServer
from zookeeper_helpers import MakeInstancer, MakeRegistrar, ids, plain_client, wait_for

import sd_core
from sd_core import ConfigError, Registration, SDError

PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture
def secured(options: dict[str, Any]) -> dict[str, Any]:
    return {**options, "username": "orders", "password": PASSWORD}


def test_other_clients_can_read_but_not_delete_nor_change_our_node(
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    secured: dict[str, Any],
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
) -> None:
    registrar = make_registrar(Registration("orders", "10.0.0.1", 8080, id="o1"), **secured)
    registrar.register()
    path = "/services/orders/o1"
    anonymous = plain_client(zookeeper_server.address + chroot)
    intruder = plain_client(
        zookeeper_server.address + chroot, auth_data=[("digest", "intruder:guess")]
    )
    try:
        for other in (anonymous, intruder):
            assert b'"address":"10.0.0.1"' in other.get(path)[0]  # readable
            with pytest.raises(NoAuthError):
                other.delete(path)
            with pytest.raises(NoAuthError):
                other.set(path, b"10.6.6.6:1")
            with pytest.raises(NoAuthError):
                other.create("/services/orders/fake", b"10.6.6.6:1", ephemeral=True)
            with pytest.raises(NoAuthError):
                other.delete("/services/orders", recursive=True)
        # ZooKeeper shows the digest's hash to those with the admin permission only.
        acl, _ = anonymous.get_acls(path)
        assert {(a.id.scheme, a.id.id, a.perms) for a in acl} == {
            ("digest", "orders:x", 31),
            ("world", "anyone", 1),
        }
        owner = plain_client(
            zookeeper_server.address + chroot, auth_data=[("digest", f"orders:{PASSWORD}")]
        )
        acl, _ = owner.get_acls("/services/orders")
        owner.stop()
        owner.close()
        digest = make_digest_acl_credential("orders", PASSWORD)
        assert {(a.id.scheme, a.id.id, a.perms) for a in acl} == {
            ("digest", digest, 31),
            ("world", "anyone", 1),
        }
        # Anyone discovers it.
        with make_instancer("orders").subscribe() as sub:
            wait_for(sub, lambda e: ids(e) == {"o1"}, 5.0, "o1, without credentials")
    finally:
        for other in (anonymous, intruder):
            other.stop()
            other.close()
    registrar.deregister()  # we can


def test_acl_options_are_checked_and_used(
    *,
    zookeeper_server: ZooKeeperServer,
    chroot: str,
    secured: dict[str, Any],
    options: dict[str, Any],
    make_registrar: MakeRegistrar,
    peer: Any,
) -> None:
    reg = Registration("acl", "10.0.0.1", 8080, id="a1")
    with pytest.raises(ConfigError, match="scheme:id:perms"):
        make_registrar(reg, acl=["world:anyone"])
    with pytest.raises(ConfigError, match="letters of cdrwa"):
        make_registrar(reg, acl=["world:anyone:rx"])
    with pytest.raises(ConfigError, match="needs credentials"):
        make_registrar(reg, acl=["auth::cdrwa"])
    with pytest.raises(ConfigError, match="both options username and password"):
        make_registrar(reg, username="orders")
    registrar = make_registrar(reg, **secured, acl="auth::cdrwa,world:anyone:rw")
    registrar.register()
    acl, _ = peer.get_acls("/services/acl/a1")
    assert {(a.id.scheme, a.perms) for a in acl} == {("digest", 31), ("world", 3)}


def test_a_node_we_may_not_create_is_a_config_error(
    zookeeper_server: ZooKeeperServer, chroot: str, options: dict[str, Any], peer: Any
) -> None:
    """The service's node belongs to someone else and lets nobody add children."""
    peer.ensure_path("/services")
    peer.create("/services/locked", b"", acl=READ_ACL_UNSAFE)
    registrar = sd_core.registrar(
        "zookeeper", Registration("locked", "10.0.0.1", 1, id="x"), **options
    )
    try:
        with pytest.raises(ConfigError, match="permission denied"):
            registrar.register()
    finally:
        registrar.close()


def test_the_password_appears_nowhere(
    secured: dict[str, Any],
    make_registrar: MakeRegistrar,
    make_instancer: MakeInstancer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not in reprs, errors or logs, kazoo's DEBUG log (which prints the auth request) included."""
    caplog.set_level(logging.DEBUG)
    registrar = make_registrar(Registration("orders", "10.0.0.1", 8080, id="o1"), **secured)
    registrar.register()
    instancer = make_instancer("orders", **secured)
    with instancer.subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"o1"}, 5.0, "o1")
    texts = [repr(registrar), repr(instancer), str(registrar.health), repr(registrar.client)]  # type: ignore[attr-defined]
    with pytest.raises(SDError) as refused:
        make_registrar(Registration("orders", "10.0.0.1", 8080), **secured, acl=["bad"])
    texts.append(str(refused.value))
    assert any("Auth(" in record.getMessage() for record in caplog.records), (
        "kazoo did not log its auth request: the check would prove nothing"
    )
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    leaks = [text for text in texts if PASSWORD in text]
    assert not leaks, leaks[0][:500]
