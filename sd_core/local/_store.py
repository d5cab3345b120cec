"""The local backend's directory: file names, the entry format, atomic writes and liveness."""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import json
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sd_core._errors import ConfigError
from sd_core._instance import Registration

__all__ = [
    "ENTRY_SUFFIX",
    "FORMAT",
    "MAX_ENTRY_BYTES",
    "TMP_PREFIX",
    "Entry",
    "EntryError",
    "check_default_root",
    "dead_reason",
    "default_root",
    "encode_name",
    "ensure_dir",
    "entry_path",
    "own_start",
    "pid_alive",
    "service_dir",
    "this_hostname",
    "wall_clock",
    "write_atomic",
]

FORMAT = "sd-local/1"
"""The value of the ``format`` key that marks a file as one of ours."""

ENTRY_SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
MAX_ENTRY_BYTES = 64 * 1024
_READABLE_MAX = 80
_HAVE_PROC = os.path.exists("/proc/self/stat")


# -- where things live ---------------------------------------------------------------------
def default_root() -> Path:
    """``$XDG_RUNTIME_DIR/sd``, else a per-user folder in the temp dir (``/tmp/sd-<uid>``)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "sd"
    getuid = getattr(os, "getuid", None)
    user = str(getuid()) if getuid is not None else encode_name(_login())
    return Path(tempfile.gettempdir()) / f"sd-{user}"


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "user"


def check_default_root(root: Path) -> None:
    """Refuse a default folder that another user created first (it could feed us entries)."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return
    try:
        owner = root.stat().st_uid
    except FileNotFoundError:
        return
    if owner != getuid():
        raise ConfigError(
            f"local: {root} belongs to another user (uid {owner}); pass the option path"
        )


def encode_name(key: str) -> str:
    """A file name for any string: readable where it can be, made unique by a hash.

    Percent-encoding keeps ``/``, ``..`` and control characters out; the hash keeps long
    keys short and keys differing only in case apart on case-insensitive file systems.
    """
    readable = quote(key, safe="", errors="surrogatepass")[:_READABLE_MAX]
    if readable.startswith("."):
        readable = "%2E" + readable[1:]
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}~{digest}"


def service_dir(root: Path, service: str) -> Path:
    """The folder holding the entries of ``service``."""
    return root / encode_name(service)


def entry_path(root: Path, service: str, instance_id: str) -> Path:
    """The file of one registered instance."""
    return service_dir(root, service) / (encode_name(instance_id) + ENTRY_SUFFIX)


def ensure_dir(root: Path, folder: Path) -> None:
    """Create ``root`` and ``folder`` (private to the user) if they are missing."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the entry -----------------------------------------------------------------------------
class EntryError(ValueError):
    """A file in a service folder is not a valid entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered instance as stored on disk, with what liveness needs."""

    registration: Registration
    pid: int
    hostname: str
    pid_start: int | None
    refreshed: float

    @classmethod
    def for_this_process(cls, registration: Registration, now: float) -> Entry:
        """The entry this process writes for ``registration``, refreshed at ``now``."""
        pid = os.getpid()
        return cls(registration, pid, this_hostname(), own_start(), now)

    @property
    def expires_at(self) -> float:
        """The wall-clock time after which the entry is stale."""
        return self.refreshed + self.registration.ttl

    def to_json(self) -> bytes:
        """The file's content."""
        reg = self.registration
        doc = {
            "format": FORMAT,
            "service": reg.service,
            "id": reg.id,
            "host": reg.host,
            "port": reg.port,
            "tags": sorted(reg.tags),
            "meta": dict(reg.meta),
            "weight": reg.weight,
            "zone": reg.zone,
            "ttl": reg.ttl,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "hostname": self.hostname,
            "refreshed": self.refreshed,
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        """Parse a file's content; raises :class:`EntryError` when it is not an entry."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EntryError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise EntryError("not a JSON object")
        if doc.get("format") != FORMAT:
            raise EntryError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        try:
            registration = Registration(
                service=doc["service"],
                host=doc["host"],
                port=doc["port"],
                id=doc["id"],
                tags=frozenset(_str_list(doc["tags"])),
                meta=doc["meta"],
                ttl=doc["ttl"],
                weight=doc["weight"],
                zone=doc["zone"],
            )
            entry = cls(
                registration,
                _int(doc["pid"], "pid"),
                _str(doc["hostname"], "hostname"),
                None if doc["pid_start"] is None else _int(doc["pid_start"], "pid_start"),
                _time(doc["refreshed"]),
            )
        except KeyError as exc:
            raise EntryError(f"missing key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise EntryError(str(exc)) from None
        return entry


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EntryError(f"tags must be a list of strings, got {value!r}")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntryError(f"{name} must be an integer, got {value!r}")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EntryError(f"{name} must be a string, got {value!r}")
    return value


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EntryError(f"refreshed must be a time in seconds, got {value!r}")
    return float(value)


# -- liveness ------------------------------------------------------------------------------
@functools.cache
def this_hostname() -> str:
    """The name of this host, as recorded in entries."""
    return socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def own_start() -> int | None:
    """This process's start time from /proc, where there is one (guards pid reuse)."""
    stat = _proc_stat(os.getpid()) if _HAVE_PROC else None
    return None if stat is None else stat[1]


def pid_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` on this host runs, and is the one that started at ``start``."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate the process there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if not _HAVE_PROC:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, started = stat
    if state in ("Z", "X"):  # killed but not reaped yet
        return False
    return start is None or started == start


def dead_reason(entry: Entry, now: float, hostname: str) -> str | None:
    """Why ``entry`` is no longer an instance, or None while it is live."""
    age = now - entry.refreshed
    if age > entry.registration.ttl:
        return f"not refreshed for {age:.1f} s (ttl {entry.registration.ttl:g} s)"
    if entry.hostname == hostname and not pid_alive(entry.pid, entry.pid_start):
        return f"process {entry.pid} is gone"
    return None


def wall_clock() -> float:
    """Wall-clock seconds: entries are compared across processes."""
    return time.time()
