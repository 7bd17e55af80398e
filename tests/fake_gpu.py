"""A fake GPU at the meter's Protocol boundary (``GpuDevice``), with a known power profile.

Time is the real monotonic clock, so the meter's scheduling, threads and timestamps run for
real; the truth (energy over any interval) is analytic. The fake behaves like the hardware the
meter is built for: an energy counter that only changes every ``counter_period_s`` (quantised to
mJ), a driver sample buffer of the last ``buffer_samples`` samples with wall-clock µs
timestamps, a 1-s average field, and calls that can be slow, unsupported, or lost.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from infergy.core.clock import SessionClock
from infergy.errors import GpuLostError, GpuNotSupportedError
from infergy.meters.gpu import FieldReading, GpuIdentity, PowerSamples


@dataclass(frozen=True)
class SineProfile:
    """P(t) = base + amp * sin(2 pi t / period), t in seconds since the fake GPU started."""

    base_w: float = 200.0
    amp_w: float = 80.0
    period_s: float = 1.3

    def power_w(self, t_s: float | np.ndarray) -> np.ndarray:
        return self.base_w + self.amp_w * np.sin(2 * math.pi * np.asarray(t_s) / self.period_s)

    def energy_j(self, a_s: float, b_s: float) -> float:
        k = 2 * math.pi / self.period_s
        return self.base_w * (b_s - a_s) - self.amp_w / k * (math.cos(k * b_s) - math.cos(k * a_s))


class FakeGpu:
    """A ``GpuDevice`` whose power follows ``profile``; failures can be injected.

    Args:
        profile: the board power over time.
        index: NVML index (and UUID suffix).
        counter_period_s: how often the energy counter changes.
        sample_period_s: spacing of the driver's power samples.
        buffer_samples: how many samples the driver buffer keeps.
        delays_s: per call name (``energy_mj``, ``power_samples``...), seconds it blocks.
        unsupported: call names that raise GpuNotSupportedError.
        mig_enabled: reported MIG mode.
    """

    def __init__(
        self,
        profile: SineProfile | None = None,
        *,
        index: int = 0,
        counter_period_s: float = 0.01,
        sample_period_s: float = 0.02,
        buffer_samples: int = 100,
        delays_s: dict[str, float] | None = None,
        unsupported: set[str] | frozenset[str] = frozenset(),
        mig_enabled: bool | None = False,
    ) -> None:
        self.profile = profile or SineProfile()
        self._identity = GpuIdentity(
            index=index,
            uuid=f"GPU-fake-{index:04d}",
            name="Fake H100",
            pci_bus_id=f"00000000:{index + 0x19:02X}:00.0",
            mig_enabled=mig_enabled,
        )
        self.counter_period_s = counter_period_s
        self.sample_period_s = sample_period_s
        self.buffer_samples = buffer_samples
        self.delays_s = dict(delays_s or {})
        self.once_delays_s: dict[str, float] = {}
        self.unsupported = set(unsupported)
        self.t0_mono_ns = time.monotonic_ns()
        self.wall_minus_mono_ns = time.time_ns() - time.monotonic_ns()
        self.lost = False
        self.can_reconnect = True
        self.calls: Counter[str] = Counter()
        self.threads: set[str] = set()  # names of the threads the calls ran on
        self._counter_zero_s = -1000.0  # counter = energy since this time (+ 1 MJ offset)
        self._lock = threading.Lock()

    # -- test controls -------------------------------------------------------------------------

    def now_s(self) -> float:
        return (time.monotonic_ns() - self.t0_mono_ns) / 1e9

    def session_to_fake_s(self, clock: SessionClock, t_ns: int) -> float:
        """A session-clock time on this fake's time axis (seconds since it started)."""
        return (t_ns - clock.wall0_ns + clock.mono0_ns - self.t0_mono_ns) / 1e9

    def true_energy_j(self, clock: SessionClock, start_ns: int, end_ns: int) -> float:
        return self.profile.energy_j(
            self.session_to_fake_s(clock, start_ns), self.session_to_fake_s(clock, end_ns)
        )

    def lose(self) -> None:
        self.lost, self.can_reconnect = True, False

    def restore(self, *, reset_counter: bool) -> None:
        """The GPU answers again (after a driver reload when ``reset_counter``)."""
        if reset_counter:
            self.reset_counter()
        self.can_reconnect = True

    def reset_counter(self) -> None:
        self._counter_zero_s = self.now_s()

    # -- GpuDevice -----------------------------------------------------------------------------

    @property
    def identity(self) -> GpuIdentity:
        return self._identity

    def _enter(self, call: str) -> None:
        with self._lock:
            self.calls[call] += 1
            self.threads.add(threading.current_thread().name)
            delay = self.delays_s.get(call, 0.0) + self.once_delays_s.pop(call, 0.0)
        if delay:
            time.sleep(delay)
        if self.lost:
            msg = f"fake GPU {self._identity.index}: cannot {call}: GPU is lost"
            raise GpuLostError(msg)
        if call in self.unsupported:
            msg = f"fake GPU {self._identity.index}: {call}: not supported"
            raise GpuNotSupportedError(msg)

    def energy_mj(self) -> int:
        self._enter("energy_mj")
        now = self.now_s()
        t_upd = math.floor(now / self.counter_period_s) * self.counter_period_s
        zero = self._counter_zero_s
        if t_upd <= zero:
            return 0
        base = 1_000_000 if zero < 0 else 0
        return base + math.floor(1000 * self.profile.energy_j(max(zero, 0.0), t_upd))

    def power_samples(self, since_wall_us: int) -> PowerSamples:
        self._enter("power_samples")
        now = self.now_s()
        last_j = math.floor(now / self.sample_period_s)
        j = np.arange(max(0, last_j - self.buffer_samples + 1), last_j + 1)
        t_s = j * self.sample_period_s
        wall_us = self.t0_mono_ns + np.round(t_s * 1e9).astype(np.int64) + self.wall_minus_mono_ns
        wall_us //= 1000
        keep = wall_us > since_wall_us
        mw = np.round(self.profile.power_w(t_s) * 1000)
        return PowerSamples(wall_us[keep], mw[keep].astype(np.float64))

    def _wall_us(self) -> int:
        return (time.monotonic_ns() + self.wall_minus_mono_ns) // 1000

    def power_instant(self) -> FieldReading:
        self._enter("power_instant")
        return FieldReading(float(self.profile.power_w(self.now_s())) * 1000, self._wall_us())

    def power_average(self) -> FieldReading:
        self._enter("power_average")
        now = self.now_s()
        return FieldReading(self.profile.energy_j(now - 1.0, now) * 1000, self._wall_us())

    def memory_power(self) -> FieldReading:
        self._enter("memory_power")
        return FieldReading(31_000.0, self._wall_us())

    def power_limit_mw(self) -> int:
        self._enter("power_limit_mw")
        return 700_000

    def clocks_mhz(self) -> tuple[int, int]:
        self._enter("clocks_mhz")
        return 1980, 2619

    def temperature_c(self) -> int:
        self._enter("temperature_c")
        return 41

    def clock_event_reasons(self) -> int:
        self._enter("clock_event_reasons")
        return 0x4

    def utilization_pct(self) -> tuple[int, int]:
        self._enter("utilization_pct")
        return 97, 40

    def reconnect(self) -> None:
        self.calls["reconnect"] += 1
        if not self.can_reconnect:
            msg = f"fake GPU {self._identity.index}: still lost"
            raise GpuLostError(msg)
        self.lost = False
