"""The distributions as a user gets them: every sdist and wheel of the workspace is built with
``uv build --all-packages``, their contents and metadata are checked file by file, and they are
installed, from the built files only (their dependencies from the package index, at the
versions of uv.lock), into fresh virtual environments outside the repository, where ``sd``
lists the backends and a discovery round-trip runs on the ``local`` backend.

This is the check that catches a file, an entry point or a piece of metadata that a release
would lack before a user does.
"""

from __future__ import annotations

import configparser
import email.message
import email.parser
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LICENSE = (ROOT / "LICENSE").read_bytes()
BACKENDS = ("consul", "etcd", "zookeeper", "dnssrv", "eureka")


@dataclass(frozen=True)
class Project:
    """One distribution of the workspace and its source folder."""

    name: str
    folder: Path
    package: str

    @property
    def stem(self) -> str:
        return self.name.replace("-", "_")

    def package_files(self) -> set[str]:
        """The package's files in the source tree, as paths relative to ``folder``."""
        return {
            path.relative_to(self.folder).as_posix()
            for path in (self.folder / self.package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }


PROJECTS = (
    Project("sd-core", ROOT, "sd_core"),
    *(Project(f"sd-{b}", ROOT / "plugins" / b, f"sd_{b}") for b in BACKENDS),
    Project("pytest-sd", ROOT / "testing", "pytest_sd"),
)


def pyproject(project: Project) -> dict[str, Any]:
    with (project.folder / "pyproject.toml").open("rb") as file:
        data: dict[str, Any] = tomllib.load(file)["project"]
    return data


VERSION = str(pyproject(PROJECTS[0])["version"])


def series(version: str) -> SpecifierSet:
    """The versions of ``version``'s release series: the same MINOR before 1.0, the same
    MAJOR after (docs/install.md, "Versions")."""
    v = Version(version)
    upper = f"0.{v.minor + 1}" if v.major == 0 else f"{v.major + 1}"
    return SpecifierSet(f">={version},<{upper}")


def clean_env() -> dict[str, str]:
    """The environment without what ties a process to this repository's virtual env."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SD_")}


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_env(),
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


# -- the sources ----------------------------------------------------------------------------


def test_every_distribution_has_the_one_version() -> None:
    for project in PROJECTS:
        assert pyproject(project)["version"] == VERSION, project.name


def test_plugins_require_sd_core_of_their_series_and_the_extras_pin_the_plugins() -> None:
    for project in PROJECTS[1:]:
        requirements = [Requirement(r) for r in pyproject(project)["dependencies"]]
        core = [r for r in requirements if r.name == "sd-core"]
        assert [r.specifier for r in core] == [series(VERSION)], project.name
    extras = pyproject(PROJECTS[0])["optional-dependencies"]
    for backend in BACKENDS:
        assert [Requirement(r) for r in extras[backend]] == [
            Requirement(f"sd-{backend}{series(VERSION)}")
        ], backend
    assert sorted(map(str, map(Requirement, extras["all"]))) == sorted(
        str(Requirement(f"sd-{backend}{series(VERSION)}")) for backend in BACKENDS
    )


def test_every_distribution_has_the_license_and_a_readme() -> None:
    for project in PROJECTS:
        assert (project.folder / "LICENSE").read_bytes() == LICENSE, project.name
        readme = (project.folder / "README.md").read_text()
        assert "pip install" in readme, project.name
    assert b"Apache License" in LICENSE
    assert b"Version 2.0, January 2004" in LICENSE


def test_plugin_readmes_say_how_to_install_and_link_their_page() -> None:
    for backend in BACKENDS:
        readme = (ROOT / "plugins" / backend / "README.md").read_text()
        assert f'pip install "sd-core[{backend}]"' in readme
        assert f"{backend}://" in readme
        assert f"docs/backends/{backend}.md" in readme
        assert (ROOT / "docs" / "backends" / f"{backend}.md").exists()


def test_the_version_is_read_from_the_installed_metadata() -> None:
    import sd_core

    assert sd_core.__version__ == VERSION


# -- the built files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sdist and wheel of the workspace, built (each wheel from its sdist) outside the
    repository."""
    out = tmp_path_factory.mktemp("dist")
    run("uv", "build", "--all-packages", "--quiet", "-o", out, cwd=ROOT, timeout=300)
    return out


def sdist(dist: Path, project: Project) -> Path:
    return dist / f"{project.stem}-{VERSION}.tar.gz"


def wheel(dist: Path, project: Project) -> Path:
    return dist / f"{project.stem}-{VERSION}-py3-none-any.whl"


def test_one_sdist_and_one_wheel_per_distribution(dist: Path) -> None:
    built = {p.name for p in dist.iterdir() if p.suffix in {".gz", ".whl"}}
    expected = {sdist(dist, p).name for p in PROJECTS} | {wheel(dist, p).name for p in PROJECTS}
    assert built == expected


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_the_sdist_holds_what_the_build_needs_and_nothing_else(
    dist: Path, project: Project
) -> None:
    top = f"{project.stem}-{VERSION}"
    with tarfile.open(sdist(dist, project)) as archive:
        names = {m.name.removeprefix(f"{top}/") for m in archive.getmembers() if m.isfile()}
        license_file = archive.extractfile(f"{top}/LICENSE")
        assert license_file is not None
        assert license_file.read() == LICENSE
    # hatchling adds the .gitignore it builds with: what it leaves out of the wheel.
    build_inputs = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", ".gitignore"}
    assert names == build_inputs | project.package_files()


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_the_wheel_holds_the_package_and_its_metadata(dist: Path, project: Project) -> None:
    info = f"{project.stem}-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel(dist, project)) as archive:
        names = set(archive.namelist())
        assert archive.read(f"{info}/licenses/LICENSE") == LICENSE
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    metadata = {f"{info}/{n}" for n in ("METADATA", "WHEEL", "RECORD", "entry_points.txt")}
    assert names == metadata | {f"{info}/licenses/LICENSE"} | project.package_files()
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    groups = {group: dict(parser[group]) for group in parser.sections()}
    assert groups == {
        "sd-core": {"console_scripts": {"sd": "sd_core.cli:main"}},
        "pytest-sd": {"pytest11": {"sd": "pytest_sd.plugin"}},
    }.get(project.name, {"sd_core": {project.package.removeprefix("sd_"): project.package}})


def wheel_metadata(dist: Path, project: Project) -> email.message.Message:
    with zipfile.ZipFile(wheel(dist, project)) as archive:
        text = archive.read(f"{project.stem}-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def project_urls(metadata: email.message.Message) -> dict[str, str]:
    return dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_the_metadata_is_complete(dist: Path, project: Project) -> None:
    metadata = wheel_metadata(dist, project)
    assert metadata["Name"] == project.name
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["License-File"] == "LICENSE"
    assert metadata["Author"]
    assert metadata["Keywords"]
    assert metadata["Summary"]
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the expression says it
    urls = project_urls(metadata)
    assert set(urls) == {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
    core = project_urls(wheel_metadata(dist, PROJECTS[0]))
    for label in ("Homepage", "Repository", "Issues", "Changelog"):  # one project
        assert urls[label] == core[label], label
    assert urls["Documentation"].startswith(core["Repository"])
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload() == (project.folder / "README.md").read_text()


# -- installed into fresh virtual environments ---------------------------------------------


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party versions of uv.lock, so installs take them from uv's cache."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    run(
        "uv", "export", "--frozen", "--all-extras", "--no-emit-workspace", "--no-hashes",
        "--no-header", "--no-annotate", "--quiet", "-o", path,
        cwd=ROOT,
    )  # fmt: skip
    return path


@dataclass(frozen=True)
class Venv:
    folder: Path

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def run(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(*args, cwd=self.folder.parent, timeout=timeout)

    def sd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.folder / "bin" / "sd", *args)

    def installed(self) -> dict[str, dict[str, str]]:
        """Each installed distribution of ours: its version and its METADATA's digest."""
        code = textwrap.dedent(
            """
            import hashlib, importlib.metadata as m, json, sys
            found = {}
            for name in sys.argv[1:]:
                try:
                    d = m.distribution(name)
                except m.PackageNotFoundError:
                    continue
                digest = hashlib.sha256(d.read_text("METADATA").encode()).hexdigest()
                found[name] = {"version": d.version, "metadata": digest}
            print(json.dumps(found))
            """
        )
        names = [p.name for p in PROJECTS]
        return dict(json.loads(self.run(self.python, "-c", code, *names).stdout))


def install(
    tmp_path_factory: pytest.TempPathFactory, dist: Path, constraints: Path, *requirements: str
) -> Venv:
    """A fresh virtual environment outside the repository, with ``requirements`` installed
    from the built files in ``dist`` (nothing of ours from anywhere else)."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    run("uv", "venv", "--quiet", "--python", sys.executable, folder, cwd=folder.parent)
    venv = Venv(folder)
    run(
        "uv", "pip", "install", "--quiet", "--python", venv.python, "--find-links", dist,
        "--constraints", constraints, *requirements,
        cwd=folder.parent,
        timeout=300,
    )  # fmt: skip
    run("uv", "pip", "check", "--quiet", "--python", venv.python, cwd=folder.parent)
    for name, found in venv.installed().items():
        project = next(p for p in PROJECTS if p.name == name)
        built = wheel_metadata(dist, project).as_string()
        assert found == {
            "version": VERSION,
            "metadata": hashlib.sha256(built.encode()).hexdigest(),
        }, f"{name} was not installed from the built files"
    return venv


@pytest.fixture(scope="module")
def venv_all(tmp_path_factory: pytest.TempPathFactory, dist: Path, constraints: Path) -> Venv:
    return install(tmp_path_factory, dist, constraints, f"sd-core[all]=={VERSION}")


def plugins_json(venv: Venv) -> dict[str, dict[str, object]]:
    document = json.loads(venv.sd("plugins", "--json").stdout)
    assert document["failed"] == []
    assert document["blocked"] == []
    return {b["name"]: b for b in document["backends"]}


def test_sd_core_all_lists_every_backend_with_its_distribution_and_version(
    venv_all: Venv,
) -> None:
    assert set(venv_all.installed()) == {p.name for p in PROJECTS} - {"pytest-sd"}
    backends = plugins_json(venv_all)
    assert set(backends) == {"local", *BACKENDS}
    for name, backend in backends.items():
        distribution = "sd-core" if name == "local" else f"sd-{name}"
        assert (backend["distribution"], backend["version"]) == (distribution, VERSION), name
        assert backend["supports_discovery"] is True, name
        assert backend["options"], name


ROUND_TRIP = textwrap.dedent(
    """
    import sys
    import sd_core
    from sd_core import Registration

    path = sys.argv[1]
    with (
        sd_core.registrar("local", Registration("web", "127.0.0.1", 8080), path=path),
        sd_core.instancer("local:///web", path=path) as instancer,
        sd_core.Endpointer(instancer) as endpointer,
    ):
        with sd_core.RoundRobin(endpointer).choose(timeout=10) as instance:
            print(instance.address, sd_core.__version__)
    """
)

EVERY_MODULE = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    for name in sys.argv[1:]:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, name + "."):
            # __main__ runs a program; httpx and grpc need their extras.
            if module.name.endswith("__main__") or module.name in ("sd_core.httpx", "sd_core.grpc"):
                continue
            importlib.import_module(module.name)
    print("imported")
    """
)


def test_sd_core_all_discovers_on_the_local_backend_and_imports_every_module(
    venv_all: Venv, tmp_path: Path
) -> None:
    result = venv_all.run(venv_all.python, "-c", ROUND_TRIP, tmp_path)
    assert result.stdout.split() == ["127.0.0.1:8080", VERSION]
    packages = [p.package for p in PROJECTS if p.name != "pytest-sd"]
    assert venv_all.run(venv_all.python, "-c", EVERY_MODULE, *packages).stdout == "imported\n"


def test_plain_sd_core_has_the_local_backend_and_names_the_extras(
    tmp_path_factory: pytest.TempPathFactory, dist: Path, constraints: Path, tmp_path: Path
) -> None:
    venv = install(tmp_path_factory, dist, constraints, f"sd-core=={VERSION}")
    assert set(venv.installed()) == {"sd-core"}
    assert set(plugins_json(venv)) == {"local"}
    result = venv.run(venv.python, "-c", ROUND_TRIP, tmp_path)
    assert result.stdout.split() == ["127.0.0.1:8080", VERSION]
    missing = subprocess.run(
        [venv.folder / "bin" / "sd", "resolve", "etcd:///web"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=venv.folder.parent,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("sd: error: backend 'etcd' is not available")
    assert 'pip install "sd-core[etcd]"' in missing.stderr


def test_one_extra_alone_and_the_testing_distribution(
    tmp_path_factory: pytest.TempPathFactory, dist: Path, constraints: Path
) -> None:
    venv = install(
        tmp_path_factory, dist, constraints, f"sd-core[dnssrv]=={VERSION}", f"pytest-sd=={VERSION}"
    )
    assert set(venv.installed()) == {"sd-core", "sd-dnssrv", "pytest-sd"}
    backends = plugins_json(venv)
    assert set(backends) == {"local", "dnssrv"}
    assert (backends["dnssrv"]["distribution"], backends["dnssrv"]["version"]) == (
        "sd-dnssrv",
        VERSION,
    )
    # pytest-sd's plugin is found through its entry point, and its fixtures work.
    test = venv.folder.parent / "test_installed.py"
    test.write_text("def test_namespace(sd_namespace):\n    assert sd_namespace.strip()\n")
    result = venv.run(venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", test)
    assert "1 passed" in result.stdout
