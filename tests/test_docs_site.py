"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a missing page
or an unresolved reference is an error), every page is in its navigation, the API reference
documents every public name, and the quick start is the README's, which tests/test_readme.py
runs."""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    return out


def nav_pages() -> list[str]:
    """The pages named by mkdocs.yml's navigation."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [page for item in node for page in walk(item)]
        if isinstance(node, dict):
            return [page for value in node.values() for page in walk(value)]
        return []

    return walk(config["nav"])


def page(site: Path, source: str) -> str:
    """The built HTML of the page made from docs/``source``."""
    folder = source.removesuffix(".md")
    built = site / (
        "index.html" if folder == "index" else f"{folder.removesuffix('/index')}/index.html"
    )
    return built.read_text()


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_every_page_is_in_the_navigation() -> None:
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert sorted(pages - set(nav_pages())) == []
    assert sorted(set(nav_pages()) - pages) == []


def test_the_navigation_has_what_a_user_needs() -> None:
    pages = set(nav_pages())
    for needed in (
        "install.md",
        "quickstart.md",
        "core.md",
        "calling.md",
        "cli.md",
        "plugins.md",
        "testing-backends.md",
        "api/index.md",
        "changelog.md",
    ):
        assert needed in pages
    for backend in ("local", "consul", "etcd", "zookeeper", "dnssrv", "eureka"):
        assert f"backends/{backend}.md" in pages


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    for source in nav_pages():
        assert page(site, source)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("api/sd_core.md", "sd_core"),
        ("api/plugin.md", "sd_core.plugin"),
        ("api/httpx.md", "sd_core.httpx"),
        ("api/grpc.md", "sd_core.grpc"),
        ("api/pytest_sd.md", "pytest_sd"),
        ("api/backends.md", "sd_consul"),
        ("api/backends.md", "sd_etcd"),
        ("api/backends.md", "sd_zookeeper"),
        ("api/backends.md", "sd_dnssrv"),
        ("api/backends.md", "sd_eureka"),
    ],
)
def test_the_api_reference_documents_every_public_name(
    site: Path, source: str, module: str
) -> None:
    built = page(site, source)
    names = [n for n in importlib.import_module(module).__all__ if n != "__version__"]
    missing = [n for n in names if f'id="{module}.{n}"' not in built]
    assert missing == []
    # The docstrings' reST roles (:class:`X`) are shown as code, not as raw markup.
    assert not re.search(r":(class|func|meth|mod|attr|data|exc):", text_of(built))


def test_the_quick_start_is_the_readmes(site: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"\[start:quickstart\].*?\n(.*)\n.*\[end:quickstart\]", readme, re.S)
    assert section is not None
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert len(blocks) >= 2  # tests/test_readme.py runs them
    built = text_of(page(site, "quickstart.md"))
    for block in blocks:
        assert block.strip() in built
    install = text_of(page(site, "install.md"))
    assert 'pip install "sd-core[all]"' in install
