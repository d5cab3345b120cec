"""pytest-sd itself: how it is installed, how it finds servers, what the conformance suite
is given and exports."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from pytest_sd import _binaries
from pytest_sd.conformance import suite

from sd_core._conformance import CAPABILITIES, Conformance, Faults


# -- the distributions -------------------------------------------------------------------
def test_only_pytest_sd_adds_a_pytest_plugin() -> None:
    plugins = {
        (ep.dist.name if ep.dist else None, ep.name, ep.value)
        for ep in metadata.entry_points(group="pytest11")
    }
    assert ("pytest-sd", "sd", "pytest_sd.plugin") in plugins
    assert not [p for p in plugins if p[0] == "sd-core"], plugins
    assert "pytest" not in str(metadata.requires("sd-core"))
    requires = metadata.requires("pytest-sd") or []
    assert any(r.startswith("sd-core") for r in requires), requires


def test_sd_core_has_no_testing_package() -> None:
    import sd_core

    assert not (Path(sd_core.__file__).parent / "testing").exists()
    with pytest.raises(ModuleNotFoundError):
        __import__("sd_core.testing")


# -- finding servers -----------------------------------------------------------------------
@pytest.mark.parametrize("what", sorted(_binaries.ENVIRONMENT))
def test_the_missing_server_message_says_how_to_get_it(what: str) -> None:
    message = str(_binaries.BackendNotInstalled(what, "/nowhere"))
    assert message.startswith(f"{what} is not installed (looked at /nowhere).")
    assert _binaries.ENVIRONMENT[what] in message
    assert "scripts/install-backends" in message
    assert "http" in message or "apt-get install" in message or "mvn package" in message


def test_an_environment_variable_names_the_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "dnsmasq"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SD_DNSMASQ_BIN", str(fake))
    assert _binaries.dnsmasq() == fake
    # Named explicitly, it is that one or none: no fallback hides a wrong setting.
    monkeypatch.setenv("SD_DNSMASQ_BIN", str(tmp_path / "missing"))
    with pytest.raises(_binaries.BackendNotInstalled, match="SD_DNSMASQ_BIN"):
        _binaries.dnsmasq()
    monkeypatch.setenv("SD_CONSUL_BIN", str(tmp_path / "consul"))
    with pytest.raises(_binaries.BackendNotInstalled, match=r"releases\.hashicorp\.com"):
        _binaries.consul()
    jar = tmp_path / "eureka.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv("SD_EUREKA_JAR", str(jar))
    assert _binaries.eureka_jar() == jar
    monkeypatch.setenv("SD_ZOOKEEPER_CLASSPATH", f"{jar}:{tmp_path / 'slf4j.jar'}")
    with pytest.raises(_binaries.BackendNotInstalled, match=r"slf4j\.jar"):
        _binaries.zookeeper_classpath()


def test_a_missing_server_fails_under_ci(tmp_path: Path) -> None:
    (tmp_path / "test_needs_dnsmasq.py").write_text(
        textwrap.dedent(
            """
            def test_needs(dnsmasq_server):
                pass
            """
        )
    )
    env = {**os.environ, "SD_DNSMASQ_BIN": str(tmp_path / "no-dnsmasq")}
    # Under CI the fixture fails (an error at setup: the run fails); elsewhere it skips.
    for ci, outcome, code in (("true", "1 error", 1), ("", "1 skipped", 0)):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rEs", str(tmp_path)],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "CI": ci},
            timeout=120,
        )
        assert outcome in result.stdout, result.stdout
        assert result.returncode == code, result.stdout
        assert "apt-get install dnsmasq-base" in result.stdout, result.stdout


# -- the conformance suite -----------------------------------------------------------------
def test_every_check_of_the_suite_is_exported() -> None:
    checks = {
        name
        for name, value in vars(suite).items()
        if name.startswith("test_") and inspect.isfunction(value)
    }
    assert checks == {name for name in suite.__all__ if name.startswith("test_")}
    from pytest_sd import conformance

    assert set(suite.__all__) <= set(conformance.__all__)
    assert {"Conformance", "Faults", "CAPABILITIES"} <= set(conformance.__all__)


def test_every_check_declares_known_capabilities() -> None:
    for name in suite.__all__:
        if not name.startswith("test_"):
            continue
        check = getattr(suite, name)
        marks = [m for m in getattr(check, "pytestmark", []) if m.name == suite.MARKER]
        assert marks, f"{name} declares no capabilities"
        for mark in marks:
            assert set(mark.args) <= CAPABILITIES.keys(), (name, mark.args)


def test_conformance_refuses_what_would_skip_by_accident() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        Conformance(backend="x", capabilities={"discovery", "telepathy"})
    with pytest.raises(ValueError, match="'restart' needs the fault handles stop, start"):
        Conformance(backend="x", capabilities={"restart"})
    with pytest.raises(ValueError, match="'restore' needs the fault handles wipe"):
        Conformance(backend="x", capabilities={"restore"}, faults=Faults(stop=print))
    with pytest.raises(ValueError, match="'secret' needs secret_options"):
        Conformance(backend="x", capabilities={"secret"})
    with pytest.raises(ValueError, match="ttl must be"):
        Conformance(backend="x", ttl=0)
    with pytest.raises(ValueError, match="restore_within"):
        Conformance(backend="x", restore_within=float("nan"))
    with pytest.raises(TypeError, match="capabilities must be a set"):
        Conformance(backend="x", capabilities="discovery")  # type: ignore[arg-type]


def test_conformance_defaults_and_repr() -> None:
    conformance = Conformance(
        backend="x",
        options={"address": "127.0.0.1:1", "token": "s3cr3t-value-of-the-test"},
        capabilities=["discovery", "registration", "secret"],  # type: ignore[arg-type]
        secret_options={"token": "s3cr3t-value-of-the-test"},
        ttl=3.0,
    )
    assert conformance.capabilities == frozenset({"discovery", "registration", "secret"})
    assert conformance.restore_bound == 6.0
    assert Conformance(backend="x", restore_within=1.5).restore_bound == 1.5
    assert "s3cr3t" not in repr(conformance)


def test_faults_of_a_server() -> None:
    calls: list[str] = []

    class Server:
        def stop(self) -> None:
            calls.append("stop")

        def start(self, *, wipe: bool = False) -> None:
            calls.append(f"start wipe={wipe}")

        def pause(self) -> None:
            calls.append("pause")

        def resume(self) -> None:
            calls.append("resume")

    faults = Faults.of(Server())
    for handle in (faults.stop, faults.start, faults.wipe, faults.pause, faults.resume):
        assert handle is not None
        handle()
    assert calls == [
        "stop",
        "start wipe=False",
        "stop",
        "start wipe=True",
        "pause",
        "resume",
    ]


def test_a_plugin_joins_with_one_fixture(tmp_path: Path) -> None:
    """A test package outside this repository joins with one module; a check that needs an
    undeclared capability is skipped, saying so."""
    (tmp_path / "test_local_joins.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from pytest_sd.conformance import *  # noqa: F403
            from pytest_sd.conformance import Conformance


            @pytest.fixture
            def sd_conformance(tmp_path):
                return Conformance(
                    backend="local",
                    options={"path": str(tmp_path / "sd")},
                    capabilities={"discovery", "registration", "tags"},
                    ttl=1.0,
                    propagation=2.0,
                )
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-k",
            "tags or meta",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the local backend declares no 'meta' capability" in result.stdout
    assert "1 passed, 1 skipped" in result.stdout, result.stdout
