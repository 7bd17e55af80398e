"""Jittered exponential backoff: the one reconnect policy of every client in infergy.

The PTD meter, the PTD bridge's analyzer link, the NVML meter's GPU recovery and the MQTT
publisher all wait ``min_s * 2**n``, capped at ``max_s``, times U(0.5, 1) between attempts.
The jitter spreads the reconnects of many nodes after a shared outage (a broker restart, a
bridge restart); keeping the lower half keeps a down peer from being hammered.
"""

from __future__ import annotations

import random


class Backoff:
    """Exponential delays with jitter.

    Args:
        min_s: the first delay's upper bound.
        max_s: the cap on any delay.
        rng: the jitter's source (inject a seeded one in tests).
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._min_s, self._max_s = min_s, max_s
        self._rng = rng or random.Random()  # jitter, not cryptography
        self._failures = 0

    @property
    def failures(self) -> int:
        """Attempts counted since the last :meth:`reset`."""
        return self._failures

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        base = min(self._max_s, self._min_s * 2.0 ** min(self._failures, 60))
        self._failures += 1
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        """Back to the minimum delay (after a stable connection)."""
        self._failures = 0
