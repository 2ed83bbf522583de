"""Kubernetes resource quantities (`250m`, `1.5`, `128Mi`, `1G`) as exact numbers, to compare them.

A neutral module: validation compares requests with limits through it; it imports nothing of meshc.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
SUFFIXES = {  # Kubernetes' decimal and binary suffixes, as multipliers
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


@functools.lru_cache(maxsize=1024)   # a mesh spells the same few quantities over and over
def parse_quantity(text: str) -> Decimal:
    """The value of a quantity the spec's pattern admits; ValueError for anything else."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    return Decimal(match.group(1)) * SUFFIXES[match.group(2) or ""]
