"""Percentages as Envoy's FractionalPercent: the spec's 0-100 with up to four decimals, exactly."""

from __future__ import annotations

from meshc.emit.envoy.values import Json

_PER_MILLION = 10_000    # one percent in millionths


def fractional(percent: float) -> Json:
    return {"numerator": round(percent * _PER_MILLION), "denominator": "MILLION"}


def runtime_fraction(percent: float) -> Json:
    """A RuntimeFractionalPercent with no runtime key: the value is fixed by the config."""
    return {"default_value": fractional(percent)}
