"""A tiny HTTP/1.1 client for tests: every status is an answer, never an exception."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = 5.0,
) -> HttpResponse:
    """Send one request on a fresh connection and read the whole answer."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http://host:port URLs are supported, got {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return HttpResponse(response.status, _header_map(response.getheaders()), response.read())
    finally:
        connection.close()


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> HttpResponse:
    return http_request(url, "GET", headers=headers, timeout=timeout)


def _header_map(pairs: list[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged
