"""A simulated GPU behind the ``GpuDevice`` Protocol: the NVML meter's code path, no hardware.

``[meters] simulated_gpus = N`` puts N of these behind the real :class:`NvmlMeter` (sampler,
counter phase model, driver-buffer decoding, context reads), for demos, soak benchmarks and
machines without a GPU. Power is ``idle_w + (busy_w - idle_w) * activity``, activity set by the
runner (queries in flight), integrated exactly; the energy counter updates every 100 ms in mJ,
the driver buffer holds 20-ms samples. Every source it feeds is labelled SIMULATED.
"""

from __future__ import annotations

import bisect
import math
import threading
import time

import numpy as np

from infergy.meters.gpu import FieldReading, GpuIdentity, PowerSamples

COUNTER_PERIOD_S = 0.1
SAMPLE_PERIOD_S = 0.02
BUFFER_SAMPLES = 120
MAX_CHANGES = 4096
KEEP_S = 10.0


class SimulatedGpu:
    """One simulated board (implements :class:`~infergy.meters.gpu.GpuDevice`).

    Args:
        index: the index (and UUID suffix).
        idle_w: power with nothing running.
        busy_w: power when fully busy.
        power_limit_w: the (fixed, reported) power limit.
    """

    def __init__(
        self,
        index: int,
        *,
        idle_w: float = 70.0,
        busy_w: float = 650.0,
        power_limit_w: float = 700.0,
    ) -> None:
        self.idle_w, self.busy_w, self.power_limit_w = idle_w, busy_w, power_limit_w
        self._identity = GpuIdentity(
            index=index,
            uuid=f"GPU-simulated-{index:04d}",
            name="Simulated GPU (SIMULATED)",
            pci_bus_id=f"00000000:{0x40 + index:02X}:00.0",
            mig_enabled=False,
            simulated=True,
        )
        self._lock = threading.Lock()
        self._t0_ns = time.monotonic_ns()
        self._wall_minus_mono_ns = time.time_ns() - self._t0_ns
        # activity history: change times (s since t0) and the activity from each change on
        self._change_s: list[float] = [0.0]
        self._activity: list[float] = [0.0]
        self._energy_at_change_j: list[float] = [0.0]

    # -- the input -----------------------------------------------------------------------------

    def set_activity(self, fraction: float) -> None:
        """How busy the board is from now on (clamped to [0, 1])."""
        now = self._now_s()
        value = min(1.0, max(0.0, float(fraction)))
        with self._lock:
            if value == self._activity[-1]:
                return  # nothing changes: the history stays as short as the load is steady
            energy = self._energy_locked(now)
            self._change_s.append(now)
            self._activity.append(value)
            self._energy_at_change_j.append(energy)
            if len(self._change_s) > MAX_CHANGES:  # bounded: nothing reads back more than 2.4 s
                cut = max(0, bisect.bisect_right(self._change_s, now - KEEP_S) - 1)
                del self._change_s[:cut], self._activity[:cut], self._energy_at_change_j[:cut]

    # -- the model -----------------------------------------------------------------------------

    def _now_s(self) -> float:
        return (time.monotonic_ns() - self._t0_ns) / 1e9

    def _power_w(self, activity: float) -> float:
        return self.idle_w + (self.busy_w - self.idle_w) * activity

    def _energy_locked(self, t_s: float) -> float:
        i = max(0, bisect.bisect_right(self._change_s, t_s) - 1)
        return self._energy_at_change_j[i] + self._power_w(self._activity[i]) * (
            t_s - self._change_s[i]
        )

    def _power_at(self, t_s: np.ndarray) -> np.ndarray:
        with self._lock:
            idx = np.clip(np.searchsorted(self._change_s, t_s, side="right") - 1, 0, None)
            act = np.asarray(self._activity)[idx]
        return self.idle_w + (self.busy_w - self.idle_w) * act

    # -- GpuDevice -----------------------------------------------------------------------------

    @property
    def identity(self) -> GpuIdentity:
        """Who it is (SIMULATED in its name)."""
        return self._identity

    def energy_mj(self) -> int:
        """Energy since it started, updated every 100 ms, in mJ."""
        t = math.floor(self._now_s() / COUNTER_PERIOD_S) * COUNTER_PERIOD_S
        with self._lock:
            return math.floor(1000 * self._energy_locked(t))

    def power_samples(self, since_wall_us: int) -> PowerSamples:
        """The 20-ms samples of the last 2.4 s newer than ``since_wall_us``."""
        last = math.floor(self._now_s() / SAMPLE_PERIOD_S)
        j = np.arange(max(0, last - BUFFER_SAMPLES + 1), last + 1)
        t_s = j * SAMPLE_PERIOD_S
        wall_us = (
            self._t0_ns + np.round(t_s * 1e9).astype(np.int64) + self._wall_minus_mono_ns
        ) // 1000
        keep = wall_us > since_wall_us
        return PowerSamples(wall_us[keep], np.round(self._power_at(t_s[keep]) * 1000))

    def _wall_us(self) -> int:
        return (time.monotonic_ns() + self._wall_minus_mono_ns) // 1000

    def power_instant(self) -> FieldReading:
        """Power now, in mW."""
        return FieldReading(
            float(self._power_at(np.array([self._now_s()]))[0]) * 1000, self._wall_us()
        )

    def power_average(self) -> FieldReading:
        """Mean power over the last second, in mW."""
        now = self._now_s()
        with self._lock:
            e = self._energy_locked(now) - self._energy_locked(max(0.0, now - 1.0))
        return FieldReading(e / max(1e-9, min(1.0, now)) * 1000, self._wall_us())

    def memory_power(self) -> FieldReading:
        """A fixed share of the board power, in mW."""
        return FieldReading(self.power_instant().power_mw * 0.08, self._wall_us())

    def power_limit_mw(self) -> int:
        """The reported power limit (never changed)."""
        return round(self.power_limit_w * 1000)

    def clocks_mhz(self) -> tuple[int, int]:
        """SM and memory clocks."""
        return 1980, 2619

    def temperature_c(self) -> int:
        """Temperature rising with power."""
        return round(30 + 40 * self.power_instant().power_mw / 1000 / self.busy_w)

    def clock_event_reasons(self) -> int:
        """NVML's GpuIdle (0x1) while idle, as real boards report it; else none."""
        with self._lock:
            return 0x1 if self._activity[-1] == 0.0 else 0

    def utilization_pct(self) -> tuple[int, int]:
        """Utilisation from the activity."""
        act = (self.power_instant().power_mw / 1000 - self.idle_w) / (self.busy_w - self.idle_w)
        return round(100 * act), round(40 * act)

    def reconnect(self) -> None:
        """Nothing to reconnect."""
