"""Credentials out of text meshc shows: errors from APIs, Git and etcd may echo a token, a header or
a URL with `user:password@`; whatever reaches logs, status, metrics or stderr passes through here.

This is the second line of defence: the first is never to show raw bodies at all (errors carry a
status, a reason and the API's own message field).
"""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# `Authorization: Bearer x`, `token=x`, `"password": "x"`, `X-Api-Key: x`, `Bearer x`
_SECRET_FIELDS = re.compile(
    r"(?i)(?P<name>authorization|proxy-authorization|x-api-key|api[_-]?key|access[_-]?token|token|password|"
    r"passwd|secret|client[_-]?secret)(?P<sep>\"?\s*[:=]\s*\"?)(?P<scheme>(?:bearer|basic|token)\s+)?[^\s\"',;&<>]+")
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")


def redact_url(text: str) -> str:
    """Hide `user:token@` in URLs."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)


def scrub(text: str) -> str:
    """`text` with URL credentials, secret-looking fields and bearer/basic tokens replaced by ***."""
    text = redact_url(text)
    text = _SECRET_FIELDS.sub(lambda m: f"{m['name']}{m['sep']}{m['scheme'] or ''}***", text)
    return _BEARER.sub(lambda m: f"{m['scheme']} ***", text)
