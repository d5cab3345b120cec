"""The whole plugin shown in docs/plugins.md runs: built on sd_core.plugin alone, it
registers, discovers, shares one client and leaves nothing behind."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pytest_sd import wait_for_event

import sd_core
import sd_core.plugin
from sd_core import Registration
from sd_core import _plugins as plugins
from sd_core._connections import connections
from sd_core._plugins import PluginManager

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def example_source() -> str:
    text = DOC.read_text()
    section = text[text.index("## A whole plugin") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


class EntryPoint:
    name = "registry"
    dist = None

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def load(self) -> ModuleType:
        return self.module


@pytest.fixture
def registry_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "sd_registry.py").write_text(example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("sd_registry")
    manager = PluginManager(entry_points=lambda: [EntryPoint(module)], builtins=(), environ={})
    monkeypatch.setattr(plugins, "_manager", manager)
    yield module
    sys.modules.pop("sd_registry", None)


def test_the_example_uses_only_public_names() -> None:
    tree = ast.parse(example_source())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sd_core"):
            assert node.module in ("sd_core", "sd_core.plugin"), node.module
            for alias in node.names:
                module = sd_core if node.module == "sd_core" else sd_core.plugin
                assert alias.name in module.__all__, alias.name


def test_the_example_plugin_registers_discovers_and_shares_one_client(
    registry_plugin: ModuleType, tmp_path: Path
) -> None:
    path = str(tmp_path / "registry.json")
    threads = set(threading.enumerate())
    assert "registry" in sd_core.backends()
    web = sd_core.instancer(f"registry:///web?path={path}&poll=10ms")
    also = sd_core.instancer("registry", "web", path=path, poll="10ms")
    api = sd_core.instancer("registry", "api", path=path)
    try:
        assert connections().count("registry") == 1
        with (
            web.subscribe() as sub,
            sd_core.registrar("registry", Registration("web", "127.0.0.1", 8080), path=path),
        ):
            event = wait_for_event(sub, lambda e: len(e.instances) == 1, 5, "the instance")
            assert event.instances[0].address == "127.0.0.1:8080"
            assert connections().count("registry") == 1
        with also.subscribe() as sub:
            wait_for_event(sub, lambda e: e.ok and not e.instances, 5, "the instance gone")
    finally:
        for instancer in (web, also, api):
            instancer.stop()
    assert connections().count("registry") == 0
    new = {t.name for t in set(threading.enumerate()) - threads if t.is_alive()}
    assert new <= {"sd-loop"} | {n for n in new if n.startswith("sd-dispatch")}


async def test_the_example_registrar_is_async_and_restores_what_was_lost(
    registry_plugin: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "registry.json"
    registrar: Any = sd_core.registrar(
        "registry", Registration("web", "127.0.0.1", 8080, ttl=0.3), path=str(path)
    )
    async with registrar:
        assert "web/127.0.0.1:8080" in path.read_text()
        path.write_text("{}")  # the backend lost it
        with registrar.health_changes() as changes:
            while (await changes.get_async(5)).restores < 1:
                pass
        assert "web/127.0.0.1:8080" in path.read_text()
    assert path.read_text() == "{}"
