"""Endpoint addresses: an IP literal, or a host name to resolve.

A neutral module: validation, analysis and the emitters all ask the same question of an address
(Envoy connects to an IP literal as is, resolves a name; a NetworkPolicy can name only the former).
It imports nothing of meshc.
"""

from __future__ import annotations


def is_ip_literal(address: str) -> bool:
    """True for an IPv4 or IPv6 literal, False for a host name."""
    import ipaddress   # only for a spec that names addresses; a few ms of a validate's start otherwise

    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
