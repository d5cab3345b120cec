"""Peer programs for interoperability tests: Go programs (go-kit) and JVM programs (Curator,
Spring Cloud) built from their sources once per version of those sources.

A build is kept under ``~/.cache/sd-core/<go|maven>/<hash of the sources>/``, so a test
session builds each peer once and later sessions reuse it. A machine without the toolchain
skips the tests that need it, and fails them under ``CI=true`` (as a missing server does).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

__all__ = ["BUILD_TIMEOUT", "build_go", "build_maven", "source_hash", "unavailable"]

BUILD_TIMEOUT = 900.0
"""Seconds a build may take: the first one downloads its dependencies."""


def unavailable(message: str) -> None:
    """Skip the test, or fail it under ``CI=true``: a peer that cannot be built is missing."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def source_hash(source: Path, files: Iterable[Path]) -> str:
    """A hash of ``files`` (paths under ``source``), names and contents."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def _cache(kind: str, digest: str) -> Path:
    return Path.home() / ".cache" / "sd-core" / kind / digest


def _tool(name: str, *fallbacks: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    for fallback in fallbacks:
        if Path(fallback).is_file():
            return Path(fallback)
    return None


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(f"building {what} took more than {BUILD_TIMEOUT:g} s")
        raise
    if result.returncode != 0:
        unavailable(f"building {what} failed:\n{(result.stdout + result.stderr)[-4000:]}")


def build_go(source: Path, name: str) -> Path:
    """The program built from the Go module in ``source`` (go.mod, go.sum and its .go
    files), from the cache when they have not changed. go.sum pins every module: the build
    never rewrites it."""
    files = [source / "go.mod", source / "go.sum", *source.glob("*.go")]
    binary = _cache("go", source_hash(source, files)) / name
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = _tool("go", "/usr/local/go/bin/go")
    if go is None:
        unavailable(f"the Go toolchain (go) is not installed: cannot build {source}")
        raise AssertionError("unreachable")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        built = Path(scratch) / name
        env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
        _run([str(go), "build", "-o", str(built), "."], source, env, str(source))
        os.replace(built, binary)  # atomic: a concurrent build just replaces it
    return binary


def build_maven(source: Path, jar: str) -> Path:
    """The jar ``target/<jar>`` that ``mvn package`` builds from the project in ``source``
    (pom.xml and src/), from the cache when they have not changed."""
    files = [source / "pom.xml", *(p for p in (source / "src").rglob("*") if p.is_file())]
    cached = _cache("maven", source_hash(source, files)) / jar
    if cached.is_file():
        return cached
    mvn = _tool("mvn")
    if mvn is None:
        unavailable(f"Maven (mvn) is not installed: cannot build {source}")
        raise AssertionError("unreachable")
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as scratch:
        build = Path(scratch)
        shutil.copy2(source / "pom.xml", build / "pom.xml")
        shutil.copytree(source / "src", build / "src")
        command = [str(mvn), "-q", "-B", "-Dstyle.color=never", "package", "-DskipTests"]
        _run(command, build, dict(os.environ), str(source))
        os.replace(build / "target" / jar, cached)
    return cached
