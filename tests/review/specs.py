"""Small specs written as text, as people write them: chains, diamonds, cycles."""

from __future__ import annotations

HEADER = "apiVersion: meshc.dev/v1alpha1\nkind: Mesh\nmetadata: {name: review}\nspec:\n"


def chain(hops: int, attempts: int, analysis: str = "", protocol: str = "http", fail_fast_hop: int = -1,
          per_try: bool = True) -> str:
    """s0 -> s1 -> ... -> s<hops>, each hop retrying `attempts` times with a generous timeout.

    Without per-try timeouts the route timeouts shrink along the chain (each caller waits longer
    than its callee), so no timeout-budget warning muddles the amplification ones.
    """
    lines = [HEADER.rstrip("\n")]
    if analysis:
        lines.append(f"  analysis: {analysis}")
    lines.append("  services:")
    for index in range(hops + 1):
        lines += [f"  - name: s{index}", f"    image: ghcr.io/acme/s{index}:1", f"    port: {8000 + index}",
                  f"    protocol: {protocol}"]
        if index < hops:
            per_try_text = ", perTryTimeout: 1s" if per_try else ""
            policy = ("      failurePolicy: fail_fast" if index == fail_fast_hop else
                      f"      retries: {{attempts: {attempts}{per_try_text}}}")
            timeout = "60s" if per_try else f"{10 * (hops - index)}s"
            lines += ["    upstreams:", f"    - service: s{index + 1}", f"      localPort: {7000 + index}",
                      f"      timeout: {timeout}", policy]
    return "\n".join(lines) + "\n"


def services(*entries: str, analysis: str = "") -> str:
    text = HEADER + (f"  analysis: {analysis}\n" if analysis else "") + "  services:\n"
    return text + "".join(f"  - {entry}\n" for entry in entries)
