"""A simulated power source driven by the workload's activity (for tests and demos, never data).

Power is ``idle_w + (busy_w - idle_w) * activity``, ``activity`` in [0, 1] set by the runner:
the fraction of the device busy (:meth:`SimMeter.set_activity`) or queries in flight
(:meth:`SimMeter.set_in_flight`). Every ``period_s`` the meter emits the mean power over the
period just ended (``interval_mean``), from the exact time-weighted activity, times
``1 + noise_frac * N(0, 1)``. Without noise its energy is exactly
``idle_w * T + (busy_w - idle_w) * activity_seconds`` (:meth:`SimMeter.activity_s`).

Everything it publishes says so: source ``sim``, kind ``sim``, ``simulated=True``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import numpy as np

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S, Semantics, Trace
from infergy.errors import ConfigError
from infergy.meters.base import (
    DEFAULT_CAPACITY,
    MeterHealth,
    OneSourceMeter,
    RingBuffer,
    SourceInfo,
)


@dataclass(frozen=True)
class PowerModel:
    """The simulated device.

    Attributes:
        idle_w: power with nothing running.
        busy_w: power when fully busy.
        noise_frac: relative standard deviation of each emitted sample.
        period_s: update period (one ``interval_mean`` sample per period).
    """

    idle_w: float = 60.0
    busy_w: float = 300.0
    noise_frac: float = 0.0
    period_s: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.busy_w) or self.period_s <= 0 or self.noise_frac < 0:
            msg = f"invalid simulated power model {self}"
            raise ConfigError(msg, hint="need 0 <= idle_w <= busy_w, period_s > 0, noise >= 0")


class SimMeter(OneSourceMeter):
    """A simulated power source; implements :class:`~infergy.meters.base.Meter`.

    Args:
        clock: the session clock.
        model: idle/busy watts, noise, update period.
        source: the source name (``sim``).
        seed: noise seed (runs are reproducible).
        capacity: samples kept.
    """

    name = "sim"

    def __init__(
        self,
        *,
        clock: SessionClock,
        model: PowerModel | None = None,
        source: str = "sim",
        seed: int = 0,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.model = model or PowerModel()
        self.source = source
        self._clock = clock
        self._rng = np.random.default_rng(seed)
        self._buffer = RingBuffer(capacity)
        self._health = MeterHealth()
        self._lock = threading.Lock()  # activity is set from runner threads (LoadGen callbacks)
        self._activity = 0.0
        self._since_ns = time.monotonic_ns()
        self._activity_ns = 0.0  # integral of activity over time, activity x ns

    # -- the input ----------------------------------------------------------------------------

    def set_activity(self, fraction: float) -> None:
        """Set how busy the simulated device is from now on (clamped to [0, 1])."""
        with self._lock:
            self._advance(time.monotonic_ns())
            self._activity = min(1.0, max(0.0, float(fraction)))

    def set_in_flight(self, queries: int, saturation: int = 1) -> None:
        """Activity from queries in flight: ``queries / saturation``, at most 1."""
        self.set_activity(queries / max(1, saturation))

    def activity_s(self) -> float:
        """Seconds of full activity so far (the integral of ``activity`` over time)."""
        with self._lock:
            self._advance(time.monotonic_ns())
            return self._activity_ns / NS_PER_S

    def _advance(self, mono_ns: int) -> None:
        self._activity_ns += self._activity * (mono_ns - self._since_ns)
        self._since_ns = mono_ns

    # -- the Meter protocol -------------------------------------------------------------------

    def describe(self) -> list[SourceInfo]:
        """The one simulated source."""
        m = self.model
        return [
            SourceInfo(
                name=self.source,
                kind="sim",
                device=f"simulated power model (idle {m.idle_w:g} W, busy {m.busy_w:g} W)",
                semantics=Semantics.INTERVAL_MEAN,
                nominal_period_ns=round(m.period_s * NS_PER_S),
                unit="W",
                simulated=True,
                details={"simulated": "true", "noise_frac": f"{m.noise_frac:g}"},
            )
        ]

    async def run(self) -> None:
        """Emit one sample per period until cancelled."""
        m = self.model
        with self._lock:
            self._advance(time.monotonic_ns())
            last_ns, last_act = self._since_ns, self._activity_ns
        next_ns = last_ns
        self._health.up = True
        while True:
            next_ns += round(m.period_s * NS_PER_S)
            await asyncio.sleep(max(0.0, (next_ns - time.monotonic_ns()) / NS_PER_S))
            with self._lock:
                self._advance(time.monotonic_ns())
                now_ns, act = self._since_ns, self._activity_ns
            mean_activity = (act - last_act) / max(1, now_ns - last_ns)
            power_w = m.idle_w + (m.busy_w - m.idle_w) * mean_activity
            if m.noise_frac:
                power_w *= 1.0 + m.noise_frac * float(self._rng.standard_normal())
            self._buffer.append(self._clock.from_monotonic(now_ns), power_w)
            self._health.samples += 1
            last_ns, last_act = now_ns, act

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The simulated samples so far."""
        self._check(source)
        period_ns = round(self.model.period_s * NS_PER_S)
        return self._buffer.trace(Semantics.INTERVAL_MEAN, period_ns, start_ns, end_ns)
