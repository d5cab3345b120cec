"""The plugin manager: entry points, built-in plugins, blocking, failures, duplicates."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sd_core
import sd_core.plugin
from sd_core import FixedInstancer, Registration
from sd_core import _plugins as plugins
from sd_core._plugins import PluginManager
from sd_core.plugin import Option

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = Path(__file__).resolve().parent / "plugin_example"


class Backend:
    """A trivial backend for the tests."""

    description = "test backend"
    options = (Option("address"),)
    supports_discovery = True
    supports_registration = False

    def __init__(self, name: str) -> None:
        self.name = name

    def instancer(self, service: str, **options: Any) -> FixedInstancer:
        return FixedInstancer()

    def registrar(self, registration: Registration, **options: Any) -> Any:
        raise NotImplementedError


class Plugin:
    """A plugin object (like a module) holding the given hook implementations."""

    def __init__(self, **hooks: Any) -> None:
        for name, hook in hooks.items():
            setattr(self, name, hook)


def plugin(*names: str) -> Plugin:
    """A plugin whose hook registers a backend for each name."""

    @sd_core.plugin.hookimpl
    def register_backends(register: Any) -> None:
        for name in names:
            register(Backend(name))

    return Plugin(register_backends=register_backends)


class Dist:
    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version


class EntryPoint:
    """Stands in for importlib.metadata.EntryPoint."""

    def __init__(self, name: str, target: object, dist: str = "sd-fake", version: str = "1.0"):
        self.name = name
        self.group = plugins.ENTRY_POINT_GROUP
        self.dist = Dist(dist, version)
        self._target = target

    def load(self) -> object:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def manager(*entry_points: EntryPoint, **kwargs: Any) -> PluginManager:
    kwargs.setdefault("builtins", ())
    kwargs.setdefault("environ", {})
    return PluginManager(entry_points=lambda: entry_points, **kwargs)


def test_loads_entry_points_lazily_and_once() -> None:
    calls = []

    def entry_points() -> list[EntryPoint]:
        calls.append(1)
        return [EntryPoint("one", plugin("one"))]

    pm = PluginManager(entry_points=entry_points, builtins=(), environ={})
    assert calls == []
    assert list(pm.backends()) == ["one"]
    assert list(pm.backends()) == ["one"]
    assert calls == [1]
    info = pm.backends()["one"]
    assert (info.distribution, info.version, info.plugin) == ("sd-fake", "1.0", "one")


def test_builtin_local_backend_comes_from_sd_core() -> None:
    pm = PluginManager(entry_points=lambda: [], environ={})
    info = pm.backends()["local"]
    assert info.distribution == "sd-core"
    assert info.version == importlib.metadata.version("sd-core")
    assert info.plugin == "sd_core.local"
    assert pm.failures() == ()


def test_builtins_are_registered_before_entry_points() -> None:
    pm = PluginManager(entry_points=lambda: [EntryPoint("late", plugin("late"))], environ={})
    assert list(pm.backends()) == ["local", "late"]


def test_monkeypatched_entry_points_reach_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    def entry_points(**params: str) -> list[EntryPoint]:
        assert params == {"group": "sd_core"}
        return [EntryPoint("patched", plugin("patched"), dist="sd-patched", version="2.0")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(plugins, "_manager", PluginManager())
    installed = sd_core.backends()
    assert installed["patched"].distribution == "sd-patched"
    assert installed["patched"].version == "2.0"
    assert "local" in installed


def test_blocked_by_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SD_CORE_BLOCK_PLUGINS", " two ,sd_core.local")
    pm = PluginManager(
        entry_points=lambda: [EntryPoint("one", plugin("one")), EntryPoint("two", plugin("two"))]
    )
    assert list(pm.backends()) == ["one"]
    assert pm.blocked() == {"two", "sd_core.local"}
    assert pm.failures() == ()


def test_broken_plugin_is_reported_and_others_still_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pm = manager(
        EntryPoint("good", plugin("good")),
        EntryPoint("broken", ModuleNotFoundError("No module named 'missing_lib'"), dist="sd-bad"),
        EntryPoint("after", plugin("after")),
    )
    with caplog.at_level(logging.WARNING, logger="sd_core.plugins"):
        assert list(pm.backends()) == ["good", "after"]
    (failure,) = pm.failures()
    assert failure.plugin == "broken"
    assert failure.distribution == "sd-bad"
    assert "ModuleNotFoundError" in failure.error
    assert "missing_lib" in failure.error
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    for part in ("'broken'", "sd-bad 1.0", "missing_lib"):
        assert part in record.getMessage()


def test_plugin_whose_hook_raises_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    @sd_core.plugin.hookimpl
    def register_backends(register: Any) -> None:
        register(Backend("half"))
        raise RuntimeError("no config file")

    pm = manager(
        EntryPoint("raising", Plugin(register_backends=register_backends)),
        EntryPoint("good", plugin("good")),
    )
    assert list(pm.backends()) == ["good"]  # nothing of the failed plugin is kept
    (failure,) = pm.failures()
    assert failure.plugin == "raising"
    assert "RuntimeError: no config file" in failure.error
    assert "no config file" in caplog.text


def test_plugin_registering_something_else_than_a_backend() -> None:
    @sd_core.plugin.hookimpl
    def register_backends(register: Any) -> None:
        register(object())

    pm = manager(EntryPoint("odd", Plugin(register_backends=register_backends)))
    assert dict(pm.backends()) == {}
    assert "is not a Backend" in pm.failures()[0].error


def test_misspelt_hook_is_a_failure_of_that_plugin() -> None:
    @sd_core.plugin.hookimpl
    def register_backend(register: Any) -> None:
        raise AssertionError("never called")

    pm = manager(
        EntryPoint("typo", Plugin(register_backend=register_backend)),
        EntryPoint("good", plugin("good")),
    )
    assert list(pm.backends()) == ["good"]
    assert [f.plugin for f in pm.failures()] == ["typo"]
    assert "register_backend" in pm.failures()[0].error


def test_duplicate_backend_name_first_wins_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pm = manager(
        EntryPoint("first", plugin("dup"), dist="sd-first", version="1.0"),
        EntryPoint("second", plugin("dup"), dist="sd-second", version="2.0"),
    )
    with caplog.at_level(logging.WARNING, logger="sd_core.plugins"):
        assert pm.backends()["dup"].distribution == "sd-first"
    assert "sd-first 1.0" in caplog.text
    assert "sd-second 2.0" in caplog.text


def test_same_entry_point_name_twice_loads_once() -> None:
    pm = manager(EntryPoint("one", plugin("a")), EntryPoint("one", plugin("b")))
    assert list(pm.backends()) == ["a"]


def test_entry_point_without_distribution() -> None:
    ep = EntryPoint("nodist", plugin("nodist"))
    ep.dist = None  # type: ignore[assignment]
    pm = manager(ep)
    assert pm.backends()["nodist"].distribution == "unknown distribution"


# -- a real installed distribution --------------------------------------------------------


@pytest.fixture(scope="session")
def example_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with sd-core and tests/plugin_example installed (editable)."""
    venv = tmp_path_factory.mktemp("example-venv") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    subprocess.run(
        ["uv", "venv", "-q", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-e",
            str(ROOT),
            "-e",
            str(EXAMPLE),
        ],
        check=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    return venv


def _run(venv: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SD_CORE_")}
    environ.update(env or {})
    result = subprocess.run(
        args, check=True, capture_output=True, text=True, timeout=60, cwd=venv.parent, env=environ
    )
    return result.stdout


def test_real_distribution_entry_point_is_found(example_venv: Path) -> None:
    python = str(example_venv / "bin" / "python")
    code = (
        "import json, sd_core; "
        "print(json.dumps({n: [i.distribution, i.version, i.plugin] "
        "for n, i in sd_core.backends().items()}))"
    )
    found = json.loads(_run(example_venv, python, "-c", code))
    assert found["example"] == ["sd-example-plugin", "0.3.1", "example"]
    assert found["local"][0] == "sd-core"


def test_real_distribution_in_sd_plugins_json(example_venv: Path) -> None:
    sd = str(example_venv / "bin" / "sd")
    document = json.loads(_run(example_venv, sd, "plugins", "--json"))
    example = {b["name"]: b for b in document["backends"]}["example"]
    assert example["distribution"] == "sd-example-plugin"
    assert example["version"] == "0.3.1"
    token = {o["name"]: o for o in example["options"]}["token"]
    assert token["secret"] is True
    assert token["env"] == "SD_EXAMPLE_TOKEN"
    assert document["failed"] == []

    blocked = json.loads(
        _run(example_venv, sd, "plugins", "--json", env={"SD_CORE_BLOCK_PLUGINS": "example"})
    )
    assert "example" not in {b["name"] for b in blocked["backends"]}
    assert blocked["blocked"] == ["example"]


def test_real_distribution_backend_is_usable(example_venv: Path, tmp_path: Path) -> None:
    python = str(example_venv / "bin" / "python")
    code = (
        "import sys, sd_core; "
        "reg = sd_core.Registration('web', '127.0.0.1', 8080, tags={'a'}); "
        "r = sd_core.registrar('example:///web', reg, path=sys.argv[1]); r.register(); "
        "i = sd_core.instancer('example://host:1/web?tag=a', path=sys.argv[1]); "
        "print(i.state.instances[0].address); r.close()"
    )
    assert _run(example_venv, python, "-c", code, str(tmp_path)).strip() == "127.0.0.1:8080"


def test_a_backend_may_be_selected_by_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    from sd_core import _plugins as plugins_module

    class Aliased:
        name = "zookeeper"
        aliases = ("zk",)
        description = "aliased"
        options = ()
        supports_discovery = True
        supports_registration = False

        def instancer(self, service: str, **options: Any) -> FixedInstancer:
            return FixedInstancer()

        def registrar(self, registration: Registration, **options: Any) -> Any:
            raise NotImplementedError

    class Entry:
        name = "aliased"
        dist = None

        def load(self) -> object:
            @sd_core.plugin.hookimpl
            def register_backends(register: Any) -> None:
                register(Aliased())

            return type("Plugin", (), {"register_backends": staticmethod(register_backends)})

    manager = PluginManager(entry_points=lambda: [Entry()], builtins=(), environ={})
    monkeypatch.setattr(plugins_module, "_manager", manager)
    assert list(sd_core.backends()) == ["zookeeper"]
    with sd_core.instancer("zk:///web") as instancer:
        assert instancer.state is not None
    with sd_core.instancer("ZK", "web") as instancer:
        assert instancer.state is not None
