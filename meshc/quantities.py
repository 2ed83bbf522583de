"""Kubernetes resource quantities (`250m`, `.5`, `1e9`, `128Mi`, `1.5G`) as exact numbers, to compare them.

The grammar and the value are apimachinery's `resource.ParseQuantity`:

    quantity     ::= signedNumber suffix
    signedNumber ::= [+-] number;  number ::= digits | digits "." | digits "." digits | "." digits
    suffix       ::= "" | n | u | m | k | M | G | T | P | E | Ki | Mi | Gi | Ti | Pi | Ei | (e|E) [+-] digits

and the value Kubernetes keeps of it: rounded up to a whole nano unit, capped at 2^63-1, so that
meshc compares requests with limits (and sync compares live values with desired ones) as the API
server does. (Its parser also reads a few digitless forms such as `.` or `-` as zero, which its
documented grammar has no room for: meshc refuses them.)

A neutral module: validation and sync read it; it imports nothing of meshc.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_UP, Context, Decimal

# The grammar above, in the regex dialect JSON Schema and Python share; its groups are the number,
# the suffix and the exponent.
QUANTITY_PATTERN = r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([numkMGTPE]|[KMGTPE]i)|[eE]([+-]?[0-9]+))?$"
# What a request, a limit or a size limit may be: the API server refuses negative ones.
NON_NEGATIVE_PATTERN = QUANTITY_PATTERN.replace("[+-]?(?:", r"\+?(?:", 1)
_QUANTITY = re.compile(QUANTITY_PATTERN)

DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}   # of 10
BINARY_EXPONENTS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}   # of 2

MAX_VALUE = Decimal(2 ** 63 - 1)   # apimachinery's cap (maxAllowed)
_NANO = Decimal("1e-9")
_INT64 = 2 ** 63
_INT32 = 2 ** 31


def is_quantity(text: str) -> bool:
    """Whether Kubernetes reads text as a quantity (of any sign)."""
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1024)   # a mesh spells the same few quantities over and over
def parse_quantity(text: str) -> Decimal:
    """The value Kubernetes keeps of a quantity; ValueError for text it does not read as one."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix, exponent = match.groups()
    negative = number.startswith("-")
    whole, _, fraction = number.lstrip("+-").partition(".")
    mantissa = int((whole + fraction) or "0")
    if exponent is not None:
        power = int(exponent)
        if not -_INT64 <= power < _INT64:   # Go's ParseInt refuses it
            raise ValueError(f"{text!r} has an exponent out of range")
        power = (power + _INT32) % (2 * _INT32) - _INT32   # and apimachinery keeps it as an int32
    elif suffix in BINARY_EXPONENTS:
        mantissa, power = mantissa << BINARY_EXPONENTS[suffix], 0
    else:
        power = DECIMAL_EXPONENTS[suffix or ""]
    # A Decimal made from text is exact however long; arithmetic would round to 28 digits.
    return _as_kept(Decimal(f"{mantissa}E{power - len(fraction)}"), negative)


def _as_kept(magnitude: Decimal, negative: bool) -> Decimal:
    """Rounded up (away from zero) to a nano unit and capped at MAX_VALUE, as apimachinery keeps it."""
    magnitude = min(magnitude, MAX_VALUE)
    if magnitude and int(magnitude.as_tuple().exponent) < -9:
        magnitude = magnitude.quantize(_NANO, rounding=ROUND_UP, context=Context(prec=40))
    return magnitude.copy_negate() if negative and magnitude else magnitude


_SI_SUFFIXES = {exponent: suffix for suffix, exponent in DECIMAL_EXPONENTS.items()}


def canonical_quantity(value: Decimal) -> str:
    """The text the API server writes back for a quantity of this value spelled without a suffix
    (apimachinery's canonical DecimalSI form): an integer times the largest power of 1000 (n u m
    k M G T P E) it can be, e.g. 1000000000 -> `1G`, 0.5 -> `500m`, 1500 -> `1500`. `value` is one
    parse_quantity returned: whole nano units, at most 2^63-1."""
    sign, digits, exponent = value.normalize(Context(prec=40)).as_tuple()
    if not any(digits):
        return "0"
    assert isinstance(exponent, int)
    power = exponent - exponent % 3          # the multiple of 3 at or below, as Go's AsCanonicalBytes
    mantissa = int("".join(map(str, digits))) * 10 ** (exponent - power)
    return f"{'-' if sign else ''}{mantissa}{_SI_SUFFIXES[power]}"
