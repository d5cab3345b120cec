"""DnsClient: the narrow wrapper over dnspython's asyncio resolver and queries."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tsig
import dns.update

from sd_core import BackendUnavailableError
from sd_core.plugin import Address, scrub

if TYPE_CHECKING:
    from ._backend import Transport
    from ._tsig import TsigKey

__all__ = [
    "AddressAnswer",
    "DnsClient",
    "SrvAnswer",
    "SrvRecord",
    "UpdateRefused",
    "describe_failure",
]

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


@dataclass(frozen=True)
class SrvRecord:
    """One SRV record; ``target`` without its trailing dot, ``""`` for the root ("none")."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class AddressAnswer:
    """The A and AAAA addresses of a name, and how long they may be kept (None: unknown)."""

    addresses: tuple[str, ...] = ()
    ttl: float | None = None


@dataclass(frozen=True)
class SrvAnswer:
    """The SRV records of a name, the addresses that came with them (the additional
    section, by lowercase target) and how long the records may be kept (the SRV TTL, or the
    negative-caching TTL of an empty answer; None: unknown)."""

    name: str
    records: tuple[SrvRecord, ...] = ()
    additional: Mapping[str, AddressAnswer] | None = None
    ttl: float | None = None


def _text(name: dns.name.Name) -> str:
    """A name as sd writes it: without the trailing dot (``"."`` for the root: ``""``)."""
    return name.to_text(omit_final_dot=True) if name != dns.name.root else ""


def _negative_ttl(response: dns.message.Message | None) -> float | None:
    """How long an empty answer may be kept (RFC 2308: the SOA's TTL and MINIMUM, the
    smaller), or None when the server sent no SOA."""
    if response is None:
        return None
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))
    return None


class UpdateRefused(Exception):
    """The server answered an update (or the registrar's query) with an error code
    (``rcode``: ``REFUSED``, ``NOTAUTH``...)."""

    def __init__(self, rcode: str, what: str, *, update: bool) -> None:
        super().__init__(f"{what}: {rcode}")
        self.rcode = rcode
        self.what = what
        self.update = update


def _rcode(response: dns.message.Message) -> str:
    """The response code of ``response`` as DNS writes it (``NOERROR``, ``REFUSED``...)."""
    return dns.rcode.to_text(response.rcode())


class _TlsNameserver(dns.nameserver.DoTNameserver):
    """A DNS-over-TLS name server whose connections use our SSL context: dnspython's own
    takes a CA but no client certificate (mutual TLS)."""

    def __init__(
        self, address: str, port: int, hostname: str | None, context: ssl.SSLContext
    ) -> None:
        super().__init__(address, port, hostname)
        self.context = context

    async def async_query(  # noqa: PLR0917 - dnspython's signature
        self,
        request: dns.message.QueryMessage,
        timeout: float,
        source: str | None,
        source_port: int,
        max_size: bool,
        backend: Any,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        return await dns.asyncquery.tls(
            request,
            self.address,
            port=self.port,
            timeout=timeout,
            one_rr_per_rrset=one_rr_per_rrset,
            ignore_trailing=ignore_trailing,
            ssl_context=self.context,
            server_hostname=self.hostname,
        )


class DnsClient:
    """Queries the name servers ``servers`` (the system's resolver when there are none) over
    the ``transport`` (UDP, TCP or TLS).

    The timeout bounds each server's answer; a lookup asks each server once, in order. It
    holds no socket between calls: every query opens and closes its own.
    """

    def __init__(self, servers: tuple[Address, ...], transport: Transport) -> None:
        self.servers = servers
        self.transport = transport
        self.timeout = transport.timeout
        self.tcp = transport.tcp
        self._context = transport.tls.ssl_context() if transport.tls is not None else None
        resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            resolver.nameservers = [self._nameserver(a) for a in servers]
        resolver.timeout = self.timeout
        resolver.lifetime = self.timeout * max(1, len(resolver.nameservers))
        resolver.cache = None
        self._resolver = resolver

    def _nameserver(self, address: Address) -> dns.nameserver.Nameserver:
        if self._context is None:
            return dns.nameserver.Do53Nameserver(address.host, address.port)
        name = self.transport.server_name or address.host
        return _TlsNameserver(address.host, address.port, name, self._context)

    @property
    def where(self) -> str:
        """The servers asked, as messages name them."""
        if self.servers:
            scheme = "tls://" if self._context is not None else ""
            return ", ".join(scheme + a.netloc for a in self.servers)
        servers = ", ".join(str(s) for s in self._resolver.nameservers)
        return f"the system resolver ({servers or 'no name server configured'})"

    @property
    def search_domains(self) -> tuple[str, ...]:
        """The domains a relative name is tried in (the system resolver's search list)."""
        if self.servers:
            return ()
        domains = list(self._resolver.search)
        if not domains and self._resolver.domain != dns.name.root:
            domains = [self._resolver.domain]
        return tuple(_text(d) for d in domains)

    # -- discovery ---------------------------------------------------------------------------
    async def srv(self, name: str) -> SrvAnswer:
        """The SRV records of ``name`` (absolute with a trailing dot; otherwise tried in the
        search domains). NXDOMAIN and an empty answer are an empty :class:`SrvAnswer`; a
        timeout, SERVFAIL or REFUSED raises :class:`BackendUnavailableError`."""
        try:
            answer = await self._resolver.resolve(
                name, dns.rdatatype.SRV, tcp=self.tcp, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[Any, dns.message.Message] = exc.kwargs.get("responses") or {}
            last = list(responses.values())[-1] if responses else None
            return SrvAnswer(name=name.rstrip("."), ttl=_negative_ttl(last))
        except Exception as exc:
            raise self._unavailable("SRV", name, exc) from exc
        if answer.rrset is None:
            return SrvAnswer(name=name.rstrip("."), ttl=_negative_ttl(answer.response))
        records = tuple(
            SrvRecord(rr.priority, rr.weight, rr.port, _text(rr.target)) for rr in answer.rrset
        )
        return SrvAnswer(
            name=_text(answer.rrset.name),
            records=records,
            additional=_addresses_of(answer.response.additional),
            ttl=float(answer.rrset.ttl),
        )

    async def addresses(self, target: str) -> AddressAnswer:
        """The A and AAAA addresses of ``target`` (a name without its trailing dot); none
        when it has none or does not exist."""
        name = target + "."
        found = await asyncio.gather(*(self._addresses(name, rdtype) for rdtype in _ADDRESS_TYPES))
        addresses = tuple(a for answer in found for a in answer.addresses)
        ttls = [answer.ttl for answer in found if answer.ttl is not None]
        return AddressAnswer(addresses, min(ttls) if ttls else None)

    async def _addresses(self, name: str, rdtype: dns.rdatatype.RdataType) -> AddressAnswer:
        try:
            answer = await self._resolver.resolve(
                name, rdtype, tcp=self.tcp, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return AddressAnswer()
        except Exception as exc:
            raise self._unavailable(dns.rdatatype.to_text(rdtype), name, exc) from exc
        if answer.rrset is None:
            return AddressAnswer()
        return AddressAnswer(tuple(rr.address for rr in answer.rrset), float(answer.rrset.ttl))

    def _unavailable(self, rdtype: str, name: str, exc: Exception) -> BackendUnavailableError:
        if isinstance(exc, dns.exception.Timeout):
            why = f"no answer within {self.timeout:g} s"
        elif isinstance(exc, dns.resolver.NoNameservers):
            why = f"no server answered usefully: {exc}"  # SERVFAIL, REFUSED... per server
        else:
            why = f"{type(exc).__name__}: {exc}"
        return BackendUnavailableError(
            scrub(f"dnssrv: {rdtype} lookup of {name} at {self.where} failed: {why}")
        )

    # -- registration (at the zone's primary server, signed) --------------------------------
    async def records(
        self, server: Address, name: str, rdtype: str, key: TsigKey | None
    ) -> tuple[str, ...]:
        """The records of ``name`` / ``rdtype`` at ``server`` itself (recursion off), as
        lowercase rdata texts; none when the name or the type does not exist there."""
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        if key is not None:
            query.use_tsig(key.keyring(), keyname=key.name, algorithm=key.algorithm)
        response = await self._exchange(query, server)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return ()
        if response.rcode() != dns.rcode.NOERROR:
            raise UpdateRefused(_rcode(response), f"{rdtype} query of {name}", update=False)
        wanted = dns.rdatatype.from_text(rdtype)
        return tuple(
            rr.to_text().lower()
            for rrset in response.answer
            if rrset.rdtype == wanted and rrset.name == dns.name.from_text(name)
            for rr in rrset
        )

    async def update(
        self,
        server: Address,
        zone: str,
        key: TsigKey | None,
        *,
        delete: Iterable[tuple[str, str, str | None]] = (),
        add: Iterable[tuple[str, int, str, str]] = (),
    ) -> None:
        """One RFC 2136 update of ``zone`` at ``server``, signed with ``key``: first the
        deletions ``(name, type, rdata)`` (rdata None: the whole RRset), then the additions
        ``(name, ttl, type, rdata)``; applied together or not at all. A refusal raises
        :class:`UpdateRefused`; dnspython's errors propagate (see :func:`describe_failure`)."""
        message = dns.update.UpdateMessage(zone)
        if key is not None:
            message.use_tsig(key.keyring(), keyname=key.name, algorithm=key.algorithm)
        for name, rdtype, rdata in delete:
            if rdata is None:
                message.delete(name, rdtype)
            else:
                message.delete(name, rdtype, rdata)
        for name, ttl, rdtype, rdata in add:
            message.add(name, ttl, rdtype, rdata)
        response = await self._exchange(message, server)
        if response.rcode() != dns.rcode.NOERROR:
            raise UpdateRefused(_rcode(response), f"update of zone {zone}", update=True)

    async def _exchange(self, message: dns.message.Message, server: Address) -> dns.message.Message:
        if self._context is not None:
            return await dns.asyncquery.tls(
                message,
                server.host,
                timeout=self.timeout,
                port=server.port,
                ssl_context=self._context,
                server_hostname=self.transport.server_name or server.host,
            )
        if self.tcp:
            return await dns.asyncquery.tcp(
                message, server.host, timeout=self.timeout, port=server.port
            )
        response, _ = await dns.asyncquery.udp_with_fallback(
            message, server.host, timeout=self.timeout, port=server.port
        )
        return response

    def explain(self, exc: BaseException, server: Address, zone: str, key: TsigKey | None) -> str:
        """What went wrong with a registration call (see :func:`describe_failure`)."""
        return describe_failure(exc, server, zone, key, self.timeout)

    def close(self) -> None:
        """Nothing to release (no socket is kept between calls)."""

    def __repr__(self) -> str:
        how = " tls" if self._context is not None else " tcp" if self.tcp else ""
        return f"<DnsClient {self.where} timeout={self.timeout:g}{how}>"


def _addresses_of(rrsets: Iterable[dns.rrset.RRset]) -> dict[str, AddressAnswer]:
    """The A and AAAA records among ``rrsets`` (an additional section), by lowercase name."""
    found: dict[str, AddressAnswer] = {}
    for rrset in rrsets:
        if rrset.rdtype not in _ADDRESS_TYPES:
            continue
        name = _text(rrset.name).lower()
        before = found.get(name, AddressAnswer())
        ttls = [t for t in (before.ttl, float(rrset.ttl)) if t is not None]
        found[name] = AddressAnswer(
            (*before.addresses, *(rr.address for rr in rrset)), min(ttls) if ttls else None
        )
    return found


_QUERY_HINTS = {
    "REFUSED": "the server does not serve {zone} (or does not let this host query it): check "
    "options zone and server (the zone's primary)",
    "NOTAUTH": "the server rejected the signature of {key} (BADSIG, BADKEY or BADTIME)",
}
_RCODE_HINTS = {
    "REFUSED": "the server refused it: is {zone} open to updates with {key}? (BIND: "
    "allow-update or update-policy in the zone statement)",
    "NOTAUTH": "the server is not authoritative for {zone}: check options zone and server "
    "(updates go to the zone's primary)",
    "NOTZONE": "a name is outside {zone}: check options zone, domain and target",
    "SERVFAIL": "the server failed to apply it (see its log)",
}


def describe_failure(
    exc: BaseException, server: Address, zone: str, key: TsigKey | None, timeout: float
) -> str:
    """What went wrong with an update of ``zone`` at ``server``, in words that say what to
    fix."""
    key_text = f"TSIG key {key.name.rstrip('.')!r} ({key.algorithm})" if key else "no TSIG key"
    if isinstance(exc, UpdateRefused):
        hint = (_RCODE_HINTS if exc.update else _QUERY_HINTS).get(exc.rcode, "")
        hint = hint.format(zone=zone, key=key_text) if hint else "see the server's log"
        return f"{server.netloc} answered {exc.rcode} to the {exc.what}: {hint}"
    if isinstance(exc, dns.tsig.PeerBadKey):
        return (
            f"{server.netloc} does not know {key_text}: check options key_name and "
            "key_algorithm against the server's key statement"
        )
    if isinstance(exc, dns.tsig.PeerBadSignature):
        return f"{server.netloc} rejected the signature of {key_text}: wrong key_secret?"
    if isinstance(exc, dns.tsig.PeerBadTime):
        return f"{server.netloc} rejected the time of the signature: the clocks differ too much"
    if isinstance(exc, dns.tsig.PeerError | dns.tsig.BadSignature | dns.tsig.BadKey):
        return f"TSIG with {server.netloc} failed ({key_text}): {type(exc).__name__}: {exc}"
    if isinstance(exc, dns.exception.Timeout):
        return f"no answer from {server.netloc} within {timeout:g} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {server.netloc} failed: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {server.netloc}: {exc.strerror or exc}"
    return f"{server.netloc}: {type(exc).__name__}: {exc}"
