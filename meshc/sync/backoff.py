"""Capped exponential backoff with jitter, for retrying transient sync failures.

The random source is injected (a seeded `random.Random` in tests), so retry delays are
reproducible; in production it is seeded from the OS.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays base, 2*base, 4*base ... up to cap, each scaled by a jitter factor in [1-j, 1].

    "Equal-ish" jitter that only ever shortens a delay: replicas that failed together spread
    out, yet no retry waits longer than the cap.
    """

    base: float
    cap: float
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one more failure."""
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 62))
        self.attempt += 1
        return float(ceiling * (1 - self.jitter * self.rng.random()))

    def reset(self) -> None:
        """A success: the next failure starts again from `base`."""
        self.attempt = 0

    @property
    def failing(self) -> bool:
        return self.attempt > 0
