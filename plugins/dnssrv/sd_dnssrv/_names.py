"""DNS names: the SRV name of a service, and the names a registration publishes."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from sd_core import ConfigError, Registration

__all__ = [
    "PublishedNames",
    "absolute",
    "is_subdomain",
    "label_for",
    "published_names",
    "srv_name",
]

_SERVICE_LABEL = re.compile(r"[A-Za-z0-9_-]{1,62}")
_PROTO = re.compile(r"[A-Za-z0-9-]{1,62}")
_LDH_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
)


def absolute(name: str) -> str:
    """``name`` with its trailing dot (``"sd.test"`` -> ``"sd.test."``); the root is ``"."``."""
    name = name.strip()
    return name if name.endswith(".") else name + "."


def is_subdomain(name: str, zone: str) -> bool:
    """Whether ``name`` is ``zone`` or below it (both absolute or both relative; any case)."""
    name, zone = name.lower(), zone.lower()
    return zone in (".", name) or name.endswith("." + zone)


def _check_domain(option: str, domain: str) -> str:
    text = absolute(domain)
    if text != "." and not _HOST_NAME.fullmatch(text):
        raise ConfigError(
            f"dnssrv: option {option} must be a domain name (dot-separated labels of letters, "
            f"digits, '-' and '_', at most 63 characters each), got {domain!r}"
        )
    return text


def srv_name(service: str, *, proto: str, domain: str | None) -> str:
    """The name whose SRV records list the instances of ``service``.

    A service with a dot in it is a full name and is used as it is (made absolute):
    ``_web._tcp.example.com`` or ``web.service.consul``. Any other name is a service name
    (RFC 2782): ``_<service>._<proto>.<domain>``, or without a domain the relative
    ``_<service>._<proto>``, which the resolver completes with its search domains.
    """
    if not isinstance(service, str) or not service.strip(". "):
        raise ConfigError(f"dnssrv: the service must be a service or domain name, got {service!r}")
    service = service.strip()
    if "." in service.rstrip("."):
        return _check_domain("service (a full SRV name)", service)
    service = service.rstrip(".")
    _check_proto(proto)
    if not _SERVICE_LABEL.fullmatch(service.removeprefix("_")):
        raise ConfigError(
            f"dnssrv: the service name {service!r} cannot be a DNS label: a service is "
            "published as _<service>._<proto>, with letters, digits, '-' and '_' (at most 62), "
            "or give a full SRV name such as _web._tcp.example.com"
        )
    relative = f"_{service.removeprefix('_')}._{proto}"
    return relative if domain is None else f"{relative}.{_check_domain('domain', domain)}"


def _check_proto(proto: str) -> None:
    if not _PROTO.fullmatch(proto):
        raise ConfigError(
            f"dnssrv: option proto must be a protocol name such as tcp or udp, got {proto!r}"
        )


def label_for(text: str) -> str:
    """One DNS host name label (lowercase letters, digits and '-') standing for ``text``.

    ``text`` itself when it already is one; otherwise its letters and digits with every other
    run of characters made a '-', followed by a short hash of ``text``, so that two texts
    never share a label (``"127.0.0.1:8080"`` -> ``"127-0-0-1-8080-b678fa"``).
    """
    if _LDH_LABEL.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    readable = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:56].strip("-")
    return f"{readable}-{digest}" if readable else digest


@dataclass(frozen=True)
class PublishedNames:
    """The names a registration publishes: its SRV record's owner and target, and whether
    the registrar writes the target's address record (it does not for a host name)."""

    zone: str
    owner: str
    target: str
    address: str | None
    """The IP address written as the target's A or AAAA record, or None."""

    @property
    def address_type(self) -> str:
        """``"A"`` or ``"AAAA"`` (only meaningful when :attr:`address` is set)."""
        return "AAAA" if self.address is not None and ":" in self.address else "A"


def published_names(
    registration: Registration,
    *,
    zone: str,
    domain: str | None,
    proto: str,
    target: str | None,
) -> PublishedNames:
    """Where ``registration`` goes: SRV at ``_<service>._<proto>.<domain or zone>``, pointing
    at ``target``; by default the registration's host when it is a host name (no address
    record written), else ``<id>.<service>.<zone>`` with the host as its A/AAAA record."""
    zone = _check_domain("zone", zone)
    if "." in registration.service:
        raise ConfigError(
            f"dnssrv: to register, the service must be a service name (one DNS label), "
            f"got {registration.service!r}"
        )
    owner = srv_name(registration.service, proto=proto, domain=zone if domain is None else domain)
    host = registration.host
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and "%" in host:
        raise ConfigError(
            f"dnssrv: the address {host!r} has a zone (%...), which an AAAA record cannot hold"
        )
    if target is not None:
        name = _check_domain("target", target)
    elif ip is None:
        name = absolute(host)
    else:
        service_label = label_for(registration.service.lstrip("_").lower())
        name = f"{label_for(registration.id)}.{service_label}.{zone}"
        if len(name) > 254:
            raise ConfigError(
                f"dnssrv: the target name {name!r} is longer than 253 characters; give a "
                f"shorter zone, or the option target"
            )
    address = str(ip) if ip is not None else None
    for what, checked in (("SRV name", owner), ("target", name)):
        if (what == "SRV name" or address is not None) and not is_subdomain(checked, zone):
            raise ConfigError(f"dnssrv: the {what} {checked!r} is outside zone {zone!r}")
    return PublishedNames(zone=zone, owner=owner, target=name, address=address)
