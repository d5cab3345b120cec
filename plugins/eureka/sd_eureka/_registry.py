"""Eureka's registry as the poller holds it: the instance records of every application, kept
up to date with ``/apps/delta`` and checked against the server's ``apps__hashcode``.

Pure logic (no I/O): the poller feeds it the documents the server answered.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._mapping import instance_id

__all__ = ["Change", "Parsed", "Registry", "parse", "reconcile_hashcode"]

Record = Mapping[str, Any]

_VERSIONS = itertools.count(1)
"""Versions of applications, unique in the process: a cache keyed by (app, version) is never
fooled by a registry built anew."""

_VOLATILE = frozenset({"leaseInfo", "actionType"})
"""Fields that change with every renewal (the lease's timestamps) or every answer: a record
that differs only there has not changed for discovery."""


def reconcile_hashcode(statuses: Mapping[str, int]) -> str:
    """Eureka's ``apps__hashcode``: each status (sorted) and its count, each followed by
    ``_``: ``DOWN_1_UP_3_``; empty for an empty registry."""
    return "".join(f"{status}_{count}_" for status, count in sorted(statuses.items()) if count)


def _items(value: object) -> list[Any]:
    """A JSON list as Eureka writes it: an array, a lone object, or nothing at all."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _significant(record: Record) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in _VOLATILE}


def _unnamed(item: object) -> str:
    """What to call an unreadable record or application that has no id: ``#`` and a digest
    of its content (renewals aside), the same in every document while it does not change,
    so that it is warned about once, and two of them are told apart."""
    content = _significant(item) if isinstance(item, Mapping) else item
    text = json.dumps(content, sort_keys=True, default=repr, ensure_ascii=True)
    return "#" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _short(value: object) -> str:
    """``repr(value)``, cut to a length that fits a log line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Change:
    """One instance of a delta: ``ADDED``, ``MODIFIED`` or ``DELETED``."""

    action: str
    app: str
    id: str
    record: Record


@dataclass
class Parsed:
    """An ``applications`` document taken apart: the records by application and id, the
    server's hashcode, and what could not be read (keyed by application and id)."""

    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    hashcode: str | None = None
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)
    rejected_statuses: collections.Counter[str] = field(default_factory=collections.Counter)


def parse(document: object) -> Parsed:
    """Read a ``GET /apps`` or ``GET /apps/delta`` answer. A document that is not an
    ``applications`` object raises ValueError; an application or an instance record that
    cannot be read is set aside in ``rejected``, the rest is kept."""
    if not isinstance(document, Mapping) or not isinstance(document.get("applications"), Mapping):
        raise ValueError("the answer is not an 'applications' object")
    body = document["applications"]
    parsed = Parsed()
    hashcode = body.get("apps__hashcode")
    parsed.hashcode = hashcode if isinstance(hashcode, str) else None
    for application in _items(body.get("application")):
        if not isinstance(application, Mapping):
            why = f"an application is {_short(application)}, not an object"
            parsed.rejected[("?", _unnamed(application))] = why
            continue
        name = application.get("name")
        if not isinstance(name, str) or not name:
            why = f"an application has the name {_short(name)}"
            parsed.rejected[("?", _unnamed(application))] = why
            continue
        app = name.upper()
        records = parsed.records.setdefault(app, {})
        for record in _items(application.get("instance")):
            if not isinstance(record, Mapping):
                why = f"an instance is {_short(record)}, not an object"
                parsed.rejected[(app, _unnamed(record))] = why
                continue
            try:
                ident = instance_id(record)
            except ValueError as exc:
                parsed.rejected[(app, _unnamed(record))] = str(exc)
                status = record.get("status")
                if isinstance(status, str):
                    parsed.rejected_statuses[status] += 1
                continue
            action = record.get("actionType")
            parsed.changes.append(
                Change(action if isinstance(action, str) else "MODIFIED", app, ident, record)
            )
            records[ident] = record
    return parsed


class Registry:
    """The instance records of every application, with a version per application that
    changes when one of its records changes for discovery (not on renewals)."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Record]] = {}
        self.versions: dict[str, int] = {}
        self.rejected: dict[tuple[str, str], str] = {}
        self._rejected_statuses: collections.Counter[str] = collections.Counter()

    def replace(self, document: object) -> bool:
        """Take a full fetch (``GET /apps``); True when an application changed."""
        parsed = parse(document)
        changed = False
        for app in list(self.apps):
            if app not in parsed.records or not parsed.records[app]:
                del self.apps[app]
                del self.versions[app]
                changed = True
        for app, records in parsed.records.items():
            if not records:
                continue
            old = self.apps.get(app)
            if old is None or _significant_all(old) != _significant_all(records):
                self.versions[app] = next(_VERSIONS)
                changed = True
            self.apps[app] = dict(records)
        self.rejected = parsed.rejected
        self._rejected_statuses = parsed.rejected_statuses
        return changed

    def apply(self, document: object) -> tuple[bool, bool]:
        """Apply a delta (``GET /apps/delta``): ADDED and MODIFIED records replace what was
        held, DELETED ones are removed. Returns (whether an application changed, whether
        the registry now adds up to the server's hashcode); when it does not, the caller
        fetches everything again."""
        parsed = parse(document)  # read it all before changing anything
        changed: set[str] = set()
        for change in parsed.changes:
            records = self.apps.get(change.app, {})
            if change.action == "DELETED":
                if records.pop(change.id, None) is not None:
                    changed.add(change.app)
            else:
                old = records.get(change.id)
                if old is None or _significant(old) != _significant(change.record):
                    changed.add(change.app)
                records[change.id] = change.record
            if records:
                self.apps[change.app] = records
            else:
                self.apps.pop(change.app, None)
        for app in changed:
            if app in self.apps:
                self.versions[app] = next(_VERSIONS)
            else:
                self.versions.pop(app, None)
        self.rejected.update(parsed.rejected)
        return bool(changed), parsed.hashcode == self.hashcode()

    def statuses(self) -> collections.Counter[str]:
        """How many instances have each status (records set aside included)."""
        counts = collections.Counter(self._rejected_statuses)
        for record in self.records():
            status = record.get("status")
            counts[status if isinstance(status, str) else "UNKNOWN"] += 1
        return counts

    def hashcode(self) -> str:
        """The ``apps__hashcode`` of what is held."""
        return reconcile_hashcode(self.statuses())

    def records(self) -> Iterator[Record]:
        """Every instance record held."""
        for records in self.apps.values():
            yield from records.values()

    def __len__(self) -> int:
        return sum(len(records) for records in self.apps.values())


def _significant_all(records: Mapping[str, Record]) -> dict[str, dict[str, Any]]:
    return {ident: _significant(record) for ident, record in records.items()}
