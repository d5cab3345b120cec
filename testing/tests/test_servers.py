"""Smoke tests of the real backend servers started by the pytest-sd plugin.

Each test makes real requests (HTTP API, four-letter words, DNS queries) and exercises the
fault handles: stop/start, restart, kill, pause/resume, start with wiped state.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pytest_sd._http import request
from pytest_sd._ports import port_open
from pytest_sd._process import wait_until
from pytest_sd.consul import ConsulServer
from pytest_sd.dns import AddressRecord, BindServer, DnsmasqServer, SrvRecord
from pytest_sd.etcd import EtcdCluster, EtcdServer
from pytest_sd.eureka import EurekaServer
from pytest_sd.zookeeper import ZooKeeperEnsemble, ZooKeeperServer


# -- Consul --------------------------------------------------------------------------------
def _consul_register(server: ConsulServer, name: str, port: int) -> None:
    resp = server.api("PUT", "/v1/agent/service/register", {"Name": name, "Port": port})
    assert resp.status == 200, resp


def _consul_catalog(server: ConsulServer, name: str) -> list[int]:
    resp = server.api("GET", f"/v1/catalog/service/{name}")
    assert resp.status == 200, resp
    return [entry["ServicePort"] for entry in resp.json()]


def test_consul_registers_a_service(consul_server: ConsulServer, sd_namespace: str) -> None:
    _consul_register(consul_server, sd_namespace, 8080)
    assert _consul_catalog(consul_server, sd_namespace) == [8080]
    resp = consul_server.api("PUT", f"/v1/agent/service/deregister/{sd_namespace}")
    assert resp.status == 200
    assert _consul_catalog(consul_server, sd_namespace) == []


def test_consul_killed_and_started_with_empty_state(
    consul_server: ConsulServer, sd_namespace: str
) -> None:
    _consul_register(consul_server, sd_namespace, 9000)
    old_pid = consul_server.pid
    consul_server.kill()
    assert not consul_server.running
    assert not port_open(consul_server.http_port)
    consul_server.start(wipe=True)
    assert consul_server.pid != old_pid
    assert _consul_catalog(consul_server, sd_namespace) == []
    node = consul_server.api("GET", f"/v1/catalog/node/{consul_server.node_name}").json()
    assert node["Node"]["Address"] == "127.0.0.1"


def test_consul_acl_denies_requests_without_the_token(
    consul_acl_server: ConsulServer, sd_namespace: str
) -> None:
    assert consul_acl_server.token
    key_url = f"{consul_acl_server.url}/v1/kv/{sd_namespace}"
    assert request("PUT", key_url, "anonymous").status == 403
    assert consul_acl_server.api("PUT", f"/v1/kv/{sd_namespace}", "managed").status == 200
    resp = consul_acl_server.api("GET", f"/v1/kv/{sd_namespace}?raw")
    assert resp.body == b"managed"


# -- etcd ----------------------------------------------------------------------------------
def test_etcd_put_get_and_version(etcd_server: EtcdServer, sd_namespace: str) -> None:
    key = f"/{sd_namespace}/a"
    assert etcd_server.put(key, "1").status == 200
    assert etcd_server.get(key) == "1"
    version = request("GET", etcd_server.url + "/version").json()
    assert version["etcdserver"].startswith(etcd_server.version + ".")


def test_etcd_paused_server_hangs_then_answers(etcd_server: EtcdServer) -> None:
    etcd_server.pause()
    assert etcd_server.paused
    with pytest.raises(OSError, match="timed out"):
        _health(etcd_server, timeout=0.5)
    etcd_server.resume()
    assert _health(etcd_server, timeout=5.0)


def _health(server: EtcdServer, timeout: float) -> bool:
    return bool(request("GET", server.url + "/health", timeout=timeout).json()["health"] == "true")


def test_etcd_cluster_survives_member_loss(etcd_cluster: EtcdCluster, sd_namespace: str) -> None:
    assert len(etcd_cluster.members) == 3
    leader = etcd_cluster.leader()
    leader.kill()
    assert not port_open(leader.client_port)
    others = [m for m in etcd_cluster.members if m is not leader]
    key = f"/{sd_namespace}/k"
    wait_until(
        lambda: others[0].put(key, "v", token=None).status == 200,
        timeout=20,
        what="a write after the leader was lost",
    )
    assert others[1].get(key) == "v"
    leader.start()
    wait_until(lambda: leader.get(key) == "v", timeout=20, what="the member to catch up")


def test_etcd_auth_limits_users(etcd_auth_server: EtcdServer, sd_namespace: str) -> None:
    server = etcd_auth_server
    anonymous = request("POST", server.url + "/v3/kv/put", {"key": "eA==", "value": "eA=="})
    assert anonymous.status != 200
    root = server.authenticate(server.root_user, server.root_password)
    assert server.put(f"/{sd_namespace}", "root", token=root).status == 200
    user = server.authenticate(server.user, server.password)
    inside = f"{server.user_prefix}{sd_namespace}"
    assert server.put(inside, "mine", token=user).status == 200
    assert server.get(inside, token=user) == "mine"
    denied = server.put(f"/{sd_namespace}", "no", token=user)
    assert denied.status != 200
    assert "permission denied" in denied.body.decode()


# -- ZooKeeper -----------------------------------------------------------------------------
def test_zookeeper_standalone_stop_start(zookeeper_server: ZooKeeperServer) -> None:
    assert zookeeper_server.mode() == "standalone"
    assert zookeeper_server.four_letter_word("ruok") == "imok"
    assert "zk_znode_count" in zookeeper_server.four_letter_word("mntr")
    zookeeper_server.stop()
    assert not port_open(zookeeper_server.port)
    zookeeper_server.start()
    assert zookeeper_server.mode() == "standalone"


def test_zookeeper_paused_server_does_not_answer(zookeeper_server: ZooKeeperServer) -> None:
    zookeeper_server.pause()
    with pytest.raises(TimeoutError):
        zookeeper_server.four_letter_word("srvr", timeout=0.5)
    zookeeper_server.resume()
    assert zookeeper_server.mode() == "standalone"


def test_zookeeper_ensemble_elects_a_new_leader(zookeeper_ensemble: ZooKeeperEnsemble) -> None:
    modes = sorted(m.mode() or "" for m in zookeeper_ensemble.members)
    assert modes == ["follower", "follower", "leader"]
    assert zookeeper_ensemble.connect_string.count(",") == 2
    old = zookeeper_ensemble.leader()
    old.kill()

    def new_leader() -> bool:
        try:
            return zookeeper_ensemble.leader() is not old
        except (LookupError, OSError):
            return False

    wait_until(new_leader, timeout=30, what="a new ZooKeeper leader")
    old.start()
    assert old.mode() == "follower"


# -- DNS -----------------------------------------------------------------------------------
def _nsupdate(
    server: BindServer, script: str, *, signed: bool = True
) -> subprocess.CompletedProcess[str]:
    nsupdate = shutil.which("nsupdate")
    if nsupdate is None:
        pytest.skip("nsupdate (bind9-dnsutils) is not installed; run bash scripts/install-backends")
    args = [nsupdate]
    if signed:
        args += ["-y", f"{server.tsig_algorithm}:{server.tsig_key_name}:{server.tsig_secret}"]
    full = f"server {server.host} {server.port}\nzone {server.zone}\n{script}\nsend\n"
    return subprocess.run(args, input=full, check=False, capture_output=True, text=True, timeout=30)


def test_bind_accepts_signed_updates_only(bind_server: BindServer, sd_namespace: str) -> None:
    soa = bind_server.query(bind_server.zone, "SOA")
    assert soa.rcode == "NOERROR"
    assert soa.authoritative
    name = f"_web._tcp.{sd_namespace}.{bind_server.zone}"
    target = f"host.{sd_namespace}.{bind_server.zone}"
    refused = _nsupdate(bind_server, f"update add {name} 5 SRV 0 0 80 {target}", signed=False)
    assert refused.returncode != 0
    assert "REFUSED" in refused.stdout + refused.stderr
    done = _nsupdate(
        bind_server,
        f"update add {name} 5 SRV 1 10 8080 {target}\nupdate add {target} 5 A 127.0.0.2",
    )
    assert done.returncode == 0, done.stderr
    srv = bind_server.query(name, "SRV").of_type("SRV")
    assert [r.data for r in srv] == [(1, 10, 8080, target)]
    bind_server.restart()
    assert [r.data for r in bind_server.query(target, "A").records] == ["127.0.0.2"]


def test_dnsmasq_serves_given_records(dnsmasq_server: DnsmasqServer, sd_namespace: str) -> None:
    zone = dnsmasq_server.zone
    srv_name = f"_api._tcp.{sd_namespace}.{zone}"
    target = f"a.{sd_namespace}.{zone}"
    dnsmasq_server.set_records(
        [
            SrvRecord(srv_name, target, 9090, priority=1, weight=5),
            AddressRecord(target, "127.0.0.3"),
        ]
    )
    srv = dnsmasq_server.query(srv_name, "SRV").of_type("SRV")
    assert [r.data for r in srv] == [(1, 5, 9090, target)]
    assert [r.data for r in dnsmasq_server.query(target, "A").of_type("A")] == ["127.0.0.3"]
    assert dnsmasq_server.query(f"missing.{zone}", "A").rcode == "NXDOMAIN"
    dnsmasq_server.kill()
    with pytest.raises((TimeoutError, ConnectionRefusedError)):
        dnsmasq_server.query(target, "A", timeout=0.5)


# -- Eureka --------------------------------------------------------------------------------
def test_eureka_registers_an_instance(eureka_server: EurekaServer, sd_namespace: str) -> None:
    app = sd_namespace.upper()
    instance = {
        "instance": {
            "instanceId": f"{sd_namespace}-1",
            "hostName": "127.0.0.1",
            "app": app,
            "ipAddr": "127.0.0.1",
            "vipAddress": sd_namespace,
            "status": "UP",
            "port": {"$": 8080, "@enabled": "true"},
            "dataCenterInfo": {
                "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                "name": "MyOwn",
            },
        }
    }
    assert eureka_server.api("POST", f"/apps/{app}", instance).status == 204
    got = eureka_server.api("GET", f"/apps/{app}")
    assert got.status == 200
    assert got.json()["application"]["instance"][0]["instanceId"] == f"{sd_namespace}-1"
    eureka_server.pause()
    with pytest.raises(TimeoutError):
        request("GET", eureka_server.url + "/apps", timeout=0.5)
    eureka_server.resume()
    assert eureka_server.api("DELETE", f"/apps/{app}/{sd_namespace}-1").status == 200


# -- the plugin itself ---------------------------------------------------------------------
def test_missing_backend_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_sd._binaries import BackendNotInstalled
    from pytest_sd.plugin import _not_installed

    exc = BackendNotInstalled("dnsmasq", "/nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install dnsmasq-base"):
        _not_installed(exc)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="bash scripts/install-backends"):
        _not_installed(exc)


def test_failing_test_report_has_the_server_log(tmp_path: Path) -> None:
    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        pytest.skip("dnsmasq is not installed; run bash scripts/install-backends")
    (tmp_path / "test_fails.py").write_text(
        textwrap.dedent(
            """
            def test_fails(dnsmasq_server):
                dnsmasq_server.query("probe." + dnsmasq_server.zone, "A")
                assert False
            """
        )
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "dnsmasq log" in result.stdout
    assert "query[A] probe.sd.test" in result.stdout
    assert time.monotonic() - started < 60
