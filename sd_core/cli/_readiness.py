"""When ``sd run`` registers its command: HOST:PORT served by the command's own processes.

A check, made again and again until it passes, is in up to three steps:

1. Ownership (Linux, where ``/proc`` shows sockets and processes): the TCP sockets listening
   on PORT that would receive a connection to HOST (the most specific binding wins, as in
   the kernel: HOST's own address before a wildcard, an IPv4 socket before a dual-stack one;
   when none matches HOST, every socket listening on PORT) all belong to the command or to
   one of its descendants. While another process holds the port, the check fails and says
   once which pid holds it.
2. Connection: a TCP connection to HOST:PORT is accepted.
3. With a URL: an HTTP GET of it answers 2xx or 3xx (redirects are not followed; no proxy).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import os
import socket
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Listener", "Readiness", "ReadyUrl", "listeners", "process_tree", "socket_inodes"]

PROC = "/proc"
_TCP_LISTEN = "0A"
_CONNECT_TIMEOUT = 1.0
_HTTP_TIMEOUT = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Listener:
    """A TCP socket in the LISTEN state."""

    address: IPAddress
    port: int
    inode: int
    ipv6: bool
    """An AF_INET6 socket (from ``/proc/net/tcp6``)."""


def _decode_address(text: str) -> IPAddress:
    # The kernel prints each 32-bit word of the address as a number in host byte order.
    words = (int(text[i : i + 8], 16) for i in range(0, len(text), 8))
    return ipaddress.ip_address(b"".join(struct.pack("=I", word) for word in words))


def listeners(port: int, proc: str = PROC) -> list[Listener]:
    """The TCP sockets of this network namespace listening on ``port``."""
    found: list[Listener] = []
    for table, ipv6 in (("tcp", False), ("tcp6", True)):
        try:
            with open(f"{proc}/net/{table}", encoding="ascii") as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                        continue
                    address, _, hex_port = fields[1].rpartition(":")
                    if int(hex_port, 16) == port:
                        found.append(Listener(_decode_address(address), port, int(fields[9]), ipv6))
        except FileNotFoundError:
            continue  # no IPv6
    return found


def _children(pid: int, proc: str) -> list[int] | None:
    """The children of ``pid`` from its threads' ``children`` files; None if the kernel has none."""
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []  # gone
    kids: list[int] = []
    for tid in tasks:
        try:
            with open(f"{proc}/{pid}/task/{tid}/children", encoding="ascii") as file:
                kids.extend(int(kid) for kid in file.read().split())
        except FileNotFoundError:
            if os.path.isdir(f"{proc}/{pid}/task/{tid}"):
                return None  # a kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return kids


def _children_by_parent(proc: str) -> dict[int, list[int]]:
    """Every process's children, from the parent pid in each ``/proc/PID/stat``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", encoding="utf-8", errors="replace") as file:
                stat = file.read()
        except OSError:
            continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    return children


def process_tree(pid: int, proc: str = PROC) -> set[int]:
    """``pid`` and its descendants."""
    tree = {pid}
    todo = [pid]
    by_parent: dict[int, list[int]] | None = None
    while todo:
        current = todo.pop()
        kids = _children(current, proc)
        if kids is None:
            if by_parent is None:
                by_parent = _children_by_parent(proc)
            kids = by_parent.get(current, [])
        for kid in kids:
            if kid not in tree:
                tree.add(kid)
                todo.append(kid)
    return tree


def socket_inodes(pids: Iterable[int], proc: str = PROC) -> tuple[dict[int, int], list[int]]:
    """The socket inodes the processes hold open (inode to pid), and the pids whose open
    files this user may not see."""
    inodes: dict[int, int] = {}
    hidden: list[int] = []
    for pid in pids:
        folder = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except PermissionError:
            hidden.append(pid)
            continue
        except OSError:
            continue  # gone
        for fd in fds:
            try:
                target = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                inodes.setdefault(int(target[8:-1]), pid)
    return inodes, hidden


def _all_pids(proc: str) -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def _command_name(pid: int, proc: str) -> str:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return "?"


def _score(listener: Listener, target: IPAddress) -> int | None:
    """How well ``listener`` matches a connection to ``target`` (None: it cannot take it)."""
    if target.version == 6 and not listener.ipv6:
        return None
    address: IPAddress = listener.address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address == target:
        exact = 4
    elif address.is_unspecified and (address.version == target.version or listener.ipv6):
        exact = 0
    else:
        return None
    return exact + (2 if listener.ipv6 == (target.version == 6) else 1)


def receiving(found: Iterable[Listener], targets: Iterable[IPAddress]) -> list[Listener]:
    """The listeners that would receive connections to ``targets``; all of them if none would."""
    found = list(found)
    chosen: dict[int, Listener] = {}
    for target in targets:
        scored = [(s, lis) for lis in found if (s := _score(lis, target)) is not None]
        if scored:
            best = max(s for s, _ in scored)
            chosen.update((lis.inode, lis) for s, lis in scored if s == best)
    return list(chosen.values()) if chosen else found


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        with contextlib.suppress(ValueError):
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
    return addresses


def _accepts(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ReadyUrl:
    """An http or https URL to GET; shown without its user info."""

    scheme: str
    host: str
    port: int
    target: str
    authorization: str | None = field(repr=False)
    shown: str

    @classmethod
    def parse(cls, text: str) -> ReadyUrl:
        """Raise ValueError unless ``text`` is an http(s) URL with a host."""
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)  # raises on a bad port
        authorization = None
        if parts.username is not None:
            credentials = f"{urllib.parse.unquote(parts.username)}:"
            credentials += urllib.parse.unquote(parts.password or "")
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port,
            target=urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
            authorization=authorization,
            shown=urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
        )

    def get(self, timeout: float) -> str | None:
        """None when a GET answers 2xx or 3xx, else what it answered."""
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"User-Agent": "sd-run", "Connection": "close"}
        if self.authorization:
            headers["Authorization"] = self.authorization
        try:
            conn.request("GET", self.target, headers=headers)
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return f"GET {self.shown} failed: {str(exc) or type(exc).__name__}"
        finally:
            conn.close()
        return None if 200 <= status < 400 else f"GET {self.shown} answered {status}"


class Readiness:
    """Whether a command serves HOST:PORT (see the module's doc); ``say`` tells the user
    what they should know once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        url: ReadyUrl | None = None,
        check_owner: bool = True,
        say: Callable[[str], None],
        proc: str = PROC,
    ) -> None:
        self.host = host
        self.port = port
        self.url = url
        self.proc = proc
        self.owner_checked = (
            check_owner and os.path.isfile(f"{proc}/net/tcp") and os.path.isdir(f"{proc}/self/fd")
        )
        """Whether the ownership step is made (asked for, and ``/proc`` allows it)."""
        self._say = say
        self._said: set[str] = set()
        self._foreign: list[int] = []
        self._holder = ""

    def _once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self._say(message)

    def check(self, pid: int, deadline: float) -> str | None:
        """None when the command of process ``pid`` is ready, else why it is not."""
        if self.owner_checked:
            reason = self._owned(pid)
            if reason is not None:
                return reason
        remaining = max(0.1, deadline - time.monotonic())
        if not _accepts(self.host, self.port, min(_CONNECT_TIMEOUT, remaining)):
            return f"{self._address()} did not accept connections"
        if self.url is not None:
            return self.url.get(min(_HTTP_TIMEOUT, remaining))
        return None

    def _address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _owned(self, pid: int) -> str | None:
        found = receiving(listeners(self.port, self.proc), _addresses(self.host, self.port))
        if not found:
            return f"nothing listens on port {self.port}"
        tree = process_tree(pid, self.proc)
        ours, hidden = socket_inodes(tree, self.proc)
        foreign = sorted({lis.inode for lis in found} - ours.keys())
        if not foreign:
            return None
        if hidden:
            self._once(
                f"cannot see the open files of pid {', '.join(map(str, sorted(hidden)))} "
                "(another user's): readiness does not check who holds the port"
            )
            return None
        if foreign != self._foreign:  # a scan of every process: only when the holder changed
            self._foreign = foreign
            holders, _ = socket_inodes(set(_all_pids(self.proc)) - tree, self.proc)
            pids = sorted({holders[inode] for inode in foreign if inode in holders})
            self._holder = (
                ", ".join(f"pid {p} ({_command_name(p, self.proc)})" for p in pids)
                if pids
                else "a process this user cannot see"
            )
        self._once(
            f"port {self.port} is held by {self._holder}, not by the command or its children; "
            "waiting for it"
        )
        return f"port {self.port} is held by {self._holder}"
