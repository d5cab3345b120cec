"""The local backend's directory: file names, the entry format, atomic writes and liveness."""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import json
import math
import os
import re
import secrets
import socket
import stat
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
    "LIVENESS_WINDOW",
    "MAX_ENTRY_BYTES",
    "MAX_PID",
    "TMP_PREFIX",
    "Entry",
    "EntryError",
    "Liveness",
    "check_default_root",
    "check_regular",
    "default_root",
    "encode_name",
    "ensure_dir",
    "entry_path",
    "new_owner",
    "oversize",
    "own_start",
    "pid_alive",
    "read_entry_file",
    "refreshed_only",
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
"""The largest entry file a reader parses, and so the largest a registrar writes."""
MAX_PID = 2**31 - 1
"""The largest process id (a C ``int``, ``pid_t``)."""
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


def entry_path(root: Path, service: str, instance_id: str, owner: str = "") -> Path:
    """The file of one registration of an instance: ``owner`` (see :func:`new_owner`) tells
    apart the files of registrars that announce the same id."""
    suffix = f".{owner}{ENTRY_SUFFIX}" if owner else ENTRY_SUFFIX
    return service_dir(root, service) / (encode_name(instance_id) + suffix)


def new_owner() -> str:
    """A name for one registrar's file, unique among the registrars of an id: its process
    id (for people reading the folder) and a random part (for registrars in one process)."""
    return f"p{os.getpid()}-{secrets.token_hex(4)}"


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


_O_READ = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(st: os.stat_result) -> None:
    """Raise :class:`EntryError` unless ``st`` is a regular file of at most the size limit."""
    if not stat.S_ISREG(st.st_mode):
        raise EntryError(f"not a regular file: {_kind(st.st_mode)}")
    if st.st_size > MAX_ENTRY_BYTES:
        raise EntryError(f"{st.st_size} bytes, larger than the limit of {MAX_ENTRY_BYTES} bytes")


def read_entry_file(path: str) -> tuple[bytes, os.stat_result]:
    """The content of an entry file and its status, never blocking on what a user or another
    process may have put in its place: it is opened without blocking (a FIFO, a device) and
    read only when it is a regular file within :data:`MAX_ENTRY_BYTES`.

    Raises :class:`EntryError` for a file that cannot be an entry, :class:`OSError` when it
    cannot be read (``FileNotFoundError`` when it is gone).
    """
    fd = os.open(path, _O_READ)
    try:
        st = os.fstat(fd)
        check_regular(st)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_ENTRY_BYTES:
            chunk = os.read(fd, MAX_ENTRY_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_ENTRY_BYTES:
        raise EntryError(f"larger than the limit of {MAX_ENTRY_BYTES} bytes")
    return b"".join(chunks), st


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
    registered: float | None = None
    """When the registrar registered (wall clock; unchanged by keepalives): of several live
    entries with one id, the latest registration is the instance."""

    @classmethod
    def for_this_process(
        cls, registration: Registration, now: float, registered: float | None = None
    ) -> Entry:
        """The entry this process writes for ``registration``, refreshed at ``now``."""
        pid = os.getpid()
        return cls(registration, pid, this_hostname(), own_start(), now, registered)

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
            "registered": self.registered,
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        """Parse a file's content; raises :class:`EntryError` when it is not an entry.

        Whatever the content (any nesting depth, any number), the only error is EntryError.
        """
        try:
            return cls._from_json(data)
        except EntryError:
            raise
        except RecursionError:
            raise EntryError("nested too deeply") from None
        except KeyError as exc:
            raise EntryError(f"missing key {exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EntryError(f"not JSON: {exc}") from None
        except OverflowError as exc:
            raise EntryError(f"a number out of range: {exc}") from None
        except (ValueError, TypeError) as exc:
            # A value of the wrong type or range, an integer of too many digits.
            raise EntryError(str(exc)) from None

    @classmethod
    def _from_json(cls, data: bytes) -> Entry:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise EntryError("not a JSON object")
        if doc.get("format") != FORMAT:
            raise EntryError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
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
        registered = doc.get("registered")
        return cls(
            registration,
            _int(doc["pid"], "pid", 1, MAX_PID),
            _str(doc["hostname"], "hostname"),
            None if doc["pid_start"] is None else _int(doc["pid_start"], "pid_start", 0),
            _time(doc["refreshed"], "refreshed"),
            None if registered is None else _time(registered, "registered"),
        )


_REFRESHED = b'"refreshed"'
_NUMBER = re.compile(
    rb"[ \t\n\r]*:[ \t\n\r]*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
)
"""After the key: the colon and a JSON number (RFC 8259 grammar: no nan, inf or ``_``)."""


def refreshed_only(data: bytes, before: bytes, entry: Entry) -> Entry | None:
    """``entry`` with the refresh time of ``data`` when ``data`` differs from ``before`` (the
    content ``entry`` was parsed from) only in the number of the ``refreshed`` key, as a
    keepalive rewrites it; None otherwise (parse ``data`` then).

    Exact, not a guess: the key occurs once in ``before`` (a quote in a JSON string is
    escaped, so the token can only be that key), everything before and after the number is
    the same bytes, and the number is a JSON number; so JSON would parse ``data`` into the
    same document but for that one value.
    """
    at = before.find(_REFRESHED)
    if at < 0 or before.find(_REFRESHED, at + 1) >= 0:
        return None
    start = at + len(_REFRESHED)
    if data[:start] != before[:start]:
        return None
    old = _NUMBER.match(before, start)
    new = _NUMBER.match(data, start)
    if old is None or new is None or data[new.end() :] != before[old.end() :]:
        return None
    try:
        refreshed = _time(float(new.group(1)), "refreshed")
    except (EntryError, OverflowError, ValueError):
        return None
    return Entry(
        entry.registration, entry.pid, entry.hostname, entry.pid_start, refreshed, entry.registered
    )


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EntryError(f"tags must be a list of strings, got {value!r}")
    return value


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise EntryError(f"{name} must be an integer {bounds}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 128 else "<huge>"
    return text if len(text) <= 60 else text[:57] + "..."


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EntryError(f"{name} must be a string, got {value!r}")
    return value


def _time(value: Any, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):
            seconds = float(value)
            if math.isfinite(seconds):
                return seconds
    raise EntryError(f"{name} must be a time in seconds, got {_short(value)}")


def oversize(registration: Registration) -> str | None:
    """Why the entry of ``registration`` cannot be written (it would exceed
    :data:`MAX_ENTRY_BYTES`, so that every reader would skip it), or None when it fits."""
    # The longest a float prints, so that no keepalive can write a larger file.
    longest = -sys.float_info.max
    worst = Entry(registration, MAX_PID, this_hostname(), 2**63, longest, longest)
    size = len(worst.to_json())
    if size <= MAX_ENTRY_BYTES:
        return None
    fields = {
        "service": len(json.dumps(registration.service)),
        "id": len(json.dumps(registration.id)),
        "host": len(json.dumps(registration.host)),
        "zone": len(json.dumps(registration.zone)),
        "tags": len(json.dumps(sorted(registration.tags))),
        "meta": len(json.dumps(dict(registration.meta))),
    }
    field = max(fields, key=lambda name: fields[name])
    detail = f"{field}: {fields[field]} bytes"
    if field == "meta":
        key = max(registration.meta, key=lambda k: len(json.dumps({k: registration.meta[k]})))
        value_bytes = len(json.dumps(registration.meta[key]))
        detail += f", the value of meta key {key[:60]!r} alone {value_bytes} bytes"
    elif field == "tags":
        tag = max(registration.tags, key=lambda t: len(json.dumps(t)))
        detail += f", the longest tag {len(json.dumps(tag))} bytes"
    return (
        f"its entry would take up to {size} bytes, over the limit of {MAX_ENTRY_BYTES} bytes "
        f"for a local entry ({detail})"
    )


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
    proc = _proc_stat(os.getpid()) if _HAVE_PROC else None
    return None if proc is None else proc[1]


def pid_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` on this host runs, and is the one that started at ``start``."""
    return _Process.read(pid, 0.0).runs(start)


LIVENESS_WINDOW = 0.5
"""How long what was read of a process is trusted when a file event brings its entry; a scan
of the whole folder reads each process afresh."""


@dataclass(frozen=True, slots=True)
class _Process:
    """What this host says of one pid at one moment."""

    checked: float
    exists: bool
    started: int | None = None
    """The start time in clock ticks since boot; None where there is no /proc."""

    @classmethod
    def read(cls, pid: int, now: float) -> _Process:
        if not 0 < pid <= MAX_PID:
            return cls(now, False)
        if sys.platform == "win32":
            return cls(now, True)  # os.kill(pid, 0) would terminate the process there
        if _HAVE_PROC:
            # One read tells whether it exists, whether it is a zombie, and when it started.
            proc = _proc_stat(pid)
            if proc is None:
                return cls(now, False)
            state, started = proc
            return cls(now, state not in ("Z", "X"), started)  # Z, X: killed, not reaped
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return cls(now, False)
        except PermissionError:
            pass  # it exists, under another user
        except OverflowError:
            return cls(now, False)
        return cls(now, True)

    def runs(self, start: int | None) -> bool:
        """Whether this is a running process that started at ``start`` (None: any)."""
        return self.exists and (start is None or self.started is None or self.started == start)


class Liveness:
    """Whether the processes of this host that entries name still run, each pid read at most
    once however many entries name it: an answer is reused while it was read at or after the
    ``fresh_after`` the caller asks for (a whole scan asks for a reading of its own time, so
    that all the entries it judges share one reading per pid)."""

    def __init__(self) -> None:
        self._known: dict[int, _Process] = {}
        self.reads = 0
        """How many times a process was read (for tests and benchmarks)."""

    def alive(self, pid: int, start: int | None, now: float, fresh_after: float) -> bool:
        """Whether process ``pid``, started at ``start``, runs (read anew unless read at or
        after ``fresh_after``; ``now`` is the time it is read at, on the same clock)."""
        known = self._known.get(pid)
        if known is None or known.checked < fresh_after:
            known = _Process.read(pid, now)
            self._known[pid] = known
            self.reads += 1
        return known.runs(start)

    def forget_before(self, moment: float) -> None:
        """Drop readings older than ``moment`` (they would be read anew anyway)."""
        self._known = {pid: p for pid, p in self._known.items() if p.checked >= moment}


def wall_clock() -> float:
    """Wall-clock seconds: entries are compared across processes."""
    return time.time()
