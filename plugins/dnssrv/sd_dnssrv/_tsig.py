"""The TSIG key that signs dynamic updates: from options or from a BIND key file."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sd_core import ConfigError
from sd_core.plugin import add_secret

__all__ = ["ALGORITHMS", "TsigKey", "tsig_key"]

ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha512",
    "hmac-sha384",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)
"""The TSIG algorithms a key may use (those of tsig-keygen; hmac-sha256 by default)."""

_KEY_BLOCK = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;?', re.IGNORECASE | re.DOTALL
)
_STATEMENT = re.compile(r'(?P<word>algorithm|secret)\s+"?(?P<value>[^";\s]+)"?\s*;', re.IGNORECASE)


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key: ``name`` (absolute), ``algorithm`` and the base64 ``secret`` (never shown)."""

    name: str
    algorithm: str = "hmac-sha256"
    secret: str = field(default="", repr=False)

    def keyring(self) -> Any:
        """The key as dnspython takes it (``use_tsig(keyring=...)``)."""
        import dns.tsig  # noqa: PLC0415 - dnspython is imported on first use

        return dns.tsig.Key(self.name, self.secret, self.algorithm)


def _checked_secret(secret: str, where: str) -> str:
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise ConfigError(
            f"dnssrv: {where} is not a base64 TSIG secret (as tsig-keygen prints it); "
            "the value is hidden: it is secret"
        )
    return secret


def _from_file(path: str, key_name: str | None) -> tuple[str, str | None, str]:
    """``(name, algorithm or None, secret)`` of the key ``key_name`` (or of the only key) in
    a key file as tsig-keygen and ddns-confgen write it."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"dnssrv: option key_file {path!r} cannot be read: {exc}") from None
    keys: dict[str, tuple[str | None, str | None]] = {}
    for block in _KEY_BLOCK.finditer(text):
        found = {m["word"].lower(): m["value"] for m in _STATEMENT.finditer(block["body"])}
        keys[block["name"].rstrip(".").lower()] = (found.get("algorithm"), found.get("secret"))
    for _, secret in keys.values():
        if secret:
            add_secret(secret)
    wanted = key_name.rstrip(".").lower() if key_name else None
    if wanted is None and len(keys) == 1:
        wanted = next(iter(keys))
    if wanted is None or wanted not in keys:
        names = ", ".join(sorted(keys)) or "none"
        raise ConfigError(
            f"dnssrv: option key_file {path!r} holds no key "
            f"{'named ' + repr(key_name) if key_name else 'alone'} (keys found: {names}); "
            'it takes a key "name" { algorithm hmac-sha256; secret "..."; }; block'
        )
    algorithm, secret = keys[wanted]
    if not secret:
        raise ConfigError(f"dnssrv: key {wanted!r} in {path!r} has no secret")
    return wanted, algorithm, _checked_secret(secret, f"the secret of key {wanted!r} in {path!r}")


def tsig_key(opts: Mapping[str, Any]) -> TsigKey | None:
    """The key that the (resolved) options ``key_name``, ``key_secret``, ``key_algorithm``
    and ``key_file`` describe, or None when no key was given (updates go unsigned)."""
    name, secret = opts.get("key_name") or None, opts.get("key_secret") or None
    algorithm = str(opts.get("key_algorithm") or "hmac-sha256").lower()
    key_file = opts.get("key_file") or None
    if key_file is not None:
        if secret is not None:
            raise ConfigError("dnssrv: give the TSIG key as key_file or as key_secret, not both")
        name, from_file, secret = _from_file(str(key_file), name)
        if from_file is not None:
            algorithm = from_file.lower()
    elif secret is None:
        if name is not None:
            raise ConfigError(f"dnssrv: key {name!r} has no secret: give option key_secret")
        return None
    else:
        secret = _checked_secret(secret, "option key_secret")
        if name is None:
            raise ConfigError("dnssrv: option key_secret needs key_name (the key's name)")
    if algorithm not in ALGORITHMS:
        raise ConfigError(
            f"dnssrv: TSIG algorithm {algorithm!r} is not supported; accepted: "
            f"{', '.join(ALGORITHMS)}"
        )
    return TsigKey(name=str(name).rstrip(".") + ".", algorithm=algorithm, secret=secret)
