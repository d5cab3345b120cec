"""A minimal DNS client (stdlib only): one query, the answer section decoded.

Enough for readiness checks and smoke tests of the DNS test servers; not a resolver.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from dataclasses import dataclass

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "TXT": 16, "AAAA": 28, "SRV": 33}
_NAMES = {code: name for name, code in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True)
class Record:
    """One answer record: ``data`` is an address for A/AAAA, ``(priority, weight, port,
    target)`` for SRV, a name for NS/CNAME, a tuple of fields for SOA, text otherwise."""

    name: str
    type: str
    ttl: int
    data: object


@dataclass(frozen=True)
class Answer:
    """The response code (``"NOERROR"``, ``"NXDOMAIN"``…), authoritative flag and answers."""

    rcode: str
    authoritative: bool
    records: tuple[Record, ...]

    def of_type(self, rtype: str) -> list[Record]:
        """The answer records of one type."""
        return [r for r in self.records if r.type == rtype]


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("idna")
    return out + b"\0"


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None
    for _ in range(128):
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = struct.unpack_from("!H", msg, offset)[0] & 0x3FFF
            continue
        offset += 1
        if length == 0:
            break
        labels.append(msg[offset : offset + length].decode(errors="replace"))
        offset += length
    return ".".join(labels) + ".", end if end is not None else offset


def _decode_rdata(msg: bytes, rtype: int, start: int, length: int) -> object:
    rdata = msg[start : start + length]
    if rtype == 1:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == 28:
        return str(ipaddress.IPv6Address(rdata))
    if rtype == 33:
        priority, weight, port = struct.unpack_from("!HHH", msg, start)
        return (priority, weight, port, _decode_name(msg, start + 6)[0])
    if rtype in (2, 5):
        return _decode_name(msg, start)[0]
    if rtype == 6:
        mname, offset = _decode_name(msg, start)
        rname, offset = _decode_name(msg, offset)
        return (mname, rname, *struct.unpack_from("!IIIII", msg, offset))
    return rdata.decode(errors="replace")


def build_query(name: str, rtype: str, query_id: int) -> bytes:
    """The wire form of a query for ``name`` / ``rtype`` (class IN)."""
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    return header + _encode_name(name) + struct.pack("!HH", TYPES[rtype], 1)


def parse_response(msg: bytes) -> Answer:
    """Decode a response's header and answer section."""
    _qid, flags, qdcount, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", msg, 0)
    offset = 12
    for _ in range(qdcount):
        offset = _decode_name(msg, offset)[1] + 4
    records = []
    for _ in range(ancount):
        name, offset = _decode_name(msg, offset)
        rtype, _rclass, ttl, length = struct.unpack_from("!HHIH", msg, offset)
        offset += 10
        data = _decode_rdata(msg, rtype, offset, length)
        offset += length
        records.append(Record(name, _NAMES.get(rtype, str(rtype)), ttl, data))
    return Answer(RCODES.get(flags & 0xF, str(flags & 0xF)), bool(flags & 0x0400), tuple(records))


def query(
    host: str, port: int, name: str, rtype: str = "A", *, timeout: float = 2.0, tcp: bool = False
) -> Answer:
    """Ask ``host:port`` one question over UDP (TCP if asked or the answer was truncated).

    Raises OSError (``TimeoutError`` included) when the server does not answer.
    """
    query_id = random.randint(0, 0xFFFF)
    packet = build_query(name, rtype, query_id)
    if not tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(packet, (host, port))
            while True:
                msg, _ = sock.recvfrom(65535)
                if struct.unpack_from("!H", msg)[0] == query_id:
                    break
        if not struct.unpack_from("!H", msg, 2)[0] & 0x0200:
            return parse_response(msg)
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack("!H", len(packet)) + packet)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack_from("!H", data)[0]:
            chunk = conn.recv(65535)
            if not chunk:
                raise ConnectionError("DNS server closed the TCP connection")
            data += chunk
    return parse_response(data[2:])
