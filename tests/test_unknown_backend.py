"""What an unknown backend's error says: the extra to install when its distribution is not
installed, and why not when it is (its plugin failed to load, registers no such backend, is
blocked, or the distribution declares no entry point).

The distributions here are real to ``importlib.metadata``: ``*.dist-info`` folders put first on
``sys.path``, where a fake ``sd-etcd`` (or ``sd-core``) hides the installed one, and the plugin
manager is a fresh one reading the real entry points.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sd_core
from sd_core import UnknownBackendError
from sd_core import _plugins as plugins
from sd_core._plugins import PluginManager

_modules = itertools.count()

FAILS = "raise ModuleNotFoundError(\"No module named 'aetcd'\", name='aetcd')\n"
REGISTERS_NOTHING = """
import sd_core.plugin

@sd_core.plugin.hookimpl
def register_backends(register):
    pass
"""
REGISTERS_ANOTHER = """
import sd_core.plugin
from sd_core import FixedInstancer

class Backend:
    name = "etcd2"
    description = "an etcd backend under another name"
    options = ()
    supports_discovery = True
    supports_registration = False

    def instancer(self, service, **options):
        return FixedInstancer()

    def registrar(self, registration, **options):
        raise NotImplementedError

@sd_core.plugin.hookimpl
def register_backends(register):
    register(Backend())
"""
RAISES_IN_HOOK = """
import sd_core.plugin

@sd_core.plugin.hookimpl
def register_backends(register):
    raise RuntimeError("no aetcd channel could be made")
"""


def distribution(
    site: Path,
    name: str,
    version: str,
    *,
    plugin: str | None = None,
    module: str = "",
    requires: tuple[str, ...] = (),
) -> None:
    """Install a distribution into the folder ``site``: its metadata and, given a plugin name,
    an entry point of group ``sd_core`` of that name naming a module of source ``module``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    metadata += [f"Requires-Dist: {requirement}\n" for requirement in requires]
    (info / "METADATA").write_text("".join(metadata))
    if plugin is not None:
        module_name = f"sd_unknown_backend_fake_{next(_modules)}"
        (site / f"{module_name}.py").write_text(module)
        (info / "entry_points.txt").write_text(f"[sd_core]\n{plugin} = {module_name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on sys.path, and a fresh plugin manager that reads the entry points of
    whatever is installed (there included) when first asked."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(plugins.BLOCK_ENV, raising=False)
    monkeypatch.setattr(plugins, "_manager", PluginManager())
    return folder


def error_of(name: str) -> str:
    with pytest.raises(UnknownBackendError) as info:
        sd_core.instancer(name, "web")
    return str(info.value)


def test_a_distribution_that_is_not_installed_is_named_with_its_extra(site: Path) -> None:
    requires = ('sd-nothere>=0.1,<0.2; extra == "nothere"',)
    distribution(site, "sd-core", "0.1.0", requires=requires)
    message = error_of("nothere")
    assert message.startswith(
        "backend 'nothere' is not available (plugin may not be installed); installed backends: "
    )
    assert message.endswith('; to install it: pip install "sd-core[nothere]"')


def test_a_plugin_that_fails_to_import_is_named_with_the_error(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=FAILS)
    message = error_of("etcd")
    assert message.startswith(
        "backend 'etcd' is not available: sd-etcd 0.1.0 is installed but its plugin 'etcd' "
        "failed to load: ModuleNotFoundError: No module named 'aetcd'; installed backends: "
    )
    assert "pip install" not in message
    assert "local" in message.split("installed backends: ")[1]


def test_a_plugin_whose_hook_raises_is_named_with_the_error(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=RAISES_IN_HOOK)
    message = error_of("etcd")
    assert (
        "sd-etcd 0.1.0 is installed but its plugin 'etcd' failed to load: register_backends "
        "failed: RuntimeError: no aetcd channel could be made" in message
    )
    assert "pip install" not in message


def test_a_plugin_that_registers_other_backends_names_them(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=REGISTERS_ANOTHER)
    message = error_of("etcd")
    assert (
        "backend 'etcd' is not available: sd-etcd 0.1.0 is installed but its plugin registers "
        "no backend 'etcd' (it registers: etcd2)" in message
    )
    assert "pip install" not in message


def test_a_plugin_that_registers_nothing_says_so(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=REGISTERS_NOTHING)
    message = error_of("etcd")
    assert (
        "backend 'etcd' is not available: sd-etcd 0.1.0 is installed and its plugin 'etcd' "
        "loaded, but it registers no backend" in message
    )
    assert "pip install" not in message


def test_a_distribution_without_its_entry_point_is_a_broken_install(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0")  # no entry_points.txt: a broken build
    message = error_of("etcd")
    assert (
        "backend 'etcd' is not available: sd-etcd 0.1.0 is installed but declares no entry "
        "point in group 'sd_core' (a broken build or installation; reinstall it)" in message
    )
    assert "pip install" not in message


def test_a_blocked_plugin_is_named_with_the_variable(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=REGISTERS_ANOTHER)
    monkeypatch.setattr(plugins, "_manager", PluginManager(environ={plugins.BLOCK_ENV: "etcd"}))
    message = error_of("etcd")
    assert (
        "backend 'etcd' is not available: sd-etcd 0.1.0 is installed but its plugin 'etcd' is "
        "blocked by SD_CORE_BLOCK_PLUGINS" in message
    )


def test_a_plugin_outside_the_extras_is_found_by_its_entry_point(site: Path) -> None:
    distribution(site, "acme-sd-vault", "2.3", plugin="vault", module=FAILS)
    message = error_of("VAULT")
    assert message.startswith(
        "backend 'VAULT' is not available: acme-sd-vault 2.3 is installed but its plugin "
        "'vault' failed to load: ModuleNotFoundError"
    )
    assert "no extra of sd-core" not in message


def test_the_other_failed_plugins_are_still_listed(site: Path) -> None:
    distribution(site, "sd-etcd", "0.1.0", plugin="etcd", module=REGISTERS_NOTHING)
    distribution(site, "acme-sd-vault", "2.3", plugin="vault", module=FAILS)
    message = error_of("etcd")
    assert "its plugin 'etcd' loaded, but it registers no backend" in message
    assert message.endswith(
        "; other plugins that failed to load: plugin 'vault' (acme-sd-vault 2.3): failed to "
        "load: ModuleNotFoundError: No module named 'aetcd'"
    )


def sd_resolve(site: Path, backend: str) -> str:
    """The error line of ``sd resolve BACKEND:///web`` run with ``site`` first on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SD_CORE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "sd_core.cli", "resolve", f"{backend}:///web"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("sd: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_the_command_line_says_why_in_one_line(tmp_path: Path) -> None:
    distribution(tmp_path, "sd-etcd", "0.1.0", plugin="etcd", module=FAILS)
    assert sd_resolve(tmp_path, "etcd").startswith(
        "sd: error: backend 'etcd' is not available: sd-etcd 0.1.0 is installed but its "
        "plugin 'etcd' failed to load: ModuleNotFoundError: No module named 'aetcd';"
    )
    assert sd_resolve(tmp_path, "nope").startswith(
        "sd: error: backend 'nope' is not available (plugin may not be installed);"
    )
