"""A tiny HTTP client for talking to test servers (stdlib only, never through a proxy)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


class HttpResponse:
    """Status, headers and body of one response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResponse(status={self.status}, body={self.body[:200]!r})"


def request(
    method: str,
    url: str,
    body: bytes | str | dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> HttpResponse:
    """Send one request; a JSON-able body is sent as JSON. Raises OSError when unreachable."""
    parts = urlsplit(url)
    all_headers = dict(headers or {})
    payload: bytes | None
    if isinstance(body, dict | list):
        payload = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        resp = conn.getresponse()
        return HttpResponse(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()
