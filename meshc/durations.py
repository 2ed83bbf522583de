"""Durations as people write them in mesh.yaml (`250ms`, `2s`, `1m`, `1.5s`), held as milliseconds."""

from __future__ import annotations

import functools
import re

_DURATION = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h)$"


# A spec writes the same few durations thousands of times (5,088 at 1,000 services: every timeout,
# interval and ejection time); each distinct text is parsed once. Bounded, so that a file of a
# million distinct durations keeps no more than this many; a text that is not a duration raises
# each time (lru_cache keeps no exception).
@functools.lru_cache(maxsize=4096)
def parse_duration(text: str) -> int:
    """Milliseconds for a duration string; ValueError with a readable reason otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a duration; write a number and a unit: 250ms, 2s, 1m, 1h")
    millis = float(match["num"]) * _UNIT_MS[match["unit"]]
    if millis != int(millis):
        raise ValueError(f"'{text}' is finer than a millisecond")
    return int(millis)


def format_duration(millis: int) -> str:
    """The shortest exact spelling: 1500 -> '1500ms', 2000 -> '2s', 60000 -> '1m'."""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"
