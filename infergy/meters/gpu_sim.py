"""A simulated GPU behind the ``GpuDevice`` Protocol: the NVML meter's code path, no hardware.

``[meters] simulated_gpus = N`` puts N of these behind the real :class:`NvmlMeter` (sampler,
counter phase model, driver-buffer decoding, context reads), for demos, soak benchmarks and
machines without a GPU. Power is ``idle_w + (busy_w - idle_w) * activity``, activity set by the
runner (queries in flight), integrated exactly; the energy counter updates every 100 ms in mJ,
the driver buffer holds 20-ms samples. Every source it feeds is labelled SIMULATED.

Given a :class:`~infergy.meters.sim_board.SimulatedBoard` (``[meters] simulated_part``), a
board follows the physically shaped model of :mod:`infergy.core.gpu_model` instead: idle power
is the model's idle state and busy power its steady state for the board's load, both under the
board's settings (power limit, clock locks), which also set the clocks and the enforced limit
it reports. A change of settings or load is a knot in the power history, so energy stays exact.
"""

from __future__ import annotations

import bisect
import math
import threading
import time

import numpy as np

from infergy.meters.gpu import FieldReading, GpuIdentity, PowerSamples
from infergy.meters.sim_board import SimulatedBoard

COUNTER_PERIOD_S = 0.1
SAMPLE_PERIOD_S = 0.02
BUFFER_SAMPLES = 120
MAX_CHANGES = 4096
KEEP_S = 10.0


class SimulatedGpu:
    """One simulated board (implements :class:`~infergy.meters.gpu.GpuDevice`).

    Args:
        index: the index (and UUID suffix).
        idle_w: power with nothing running (without a ``board``).
        busy_w: power when fully busy (without a ``board``).
        power_limit_w: the (fixed, reported) power limit (without a ``board``).
        board: a modelled board to follow (its part, settings and load); see the module.
    """

    def __init__(
        self,
        index: int,
        *,
        idle_w: float = 70.0,
        busy_w: float = 650.0,
        power_limit_w: float = 700.0,
        board: SimulatedBoard | None = None,
    ) -> None:
        self.idle_w, self.busy_w, self.power_limit_w = idle_w, busy_w, power_limit_w
        self.board = board
        self._identity = GpuIdentity(
            index=index,
            uuid=f"GPU-simulated-{index:04d}" if board is None else board.uuid,
            name="Simulated GPU (SIMULATED)" if board is None else board.part.name,
            pci_bus_id=f"00000000:{0x40 + index:02X}:00.0",
            mig_enabled=False,
            simulated=True,
        )
        self._lock = threading.Lock()
        self._t0_ns = time.monotonic_ns()
        self._wall_minus_mono_ns = time.time_ns() - self._t0_ns
        # power history: change times (s since t0), the activity and power from each change on
        self._change_s: list[float] = [0.0]
        self._activity: list[float] = [0.0]
        self._power: list[float] = [self._power_w(0.0)]
        self._energy_at_change_j: list[float] = [0.0]
        if board is not None:
            board.subscribe(self._board_changed)

    # -- the input -----------------------------------------------------------------------------

    def set_activity(self, fraction: float) -> None:
        """How busy the board is from now on (clamped to [0, 1])."""
        value = min(1.0, max(0.0, float(fraction)))
        with self._lock:
            if value == self._activity[-1]:
                return  # nothing changes: the history stays as short as the load is steady
        self._knot(value)

    def _board_changed(self) -> None:
        """The board's settings or load changed: its power does, at the same activity."""
        with self._lock:
            activity = self._activity[-1]
        self._knot(activity)

    def _knot(self, activity: float) -> None:
        power = self._power_w(activity)
        now = self._now_s()
        with self._lock:
            energy = self._energy_locked(now)
            self._change_s.append(now)
            self._activity.append(activity)
            self._power.append(power)
            self._energy_at_change_j.append(energy)
            if len(self._change_s) > MAX_CHANGES:  # bounded: nothing reads back more than 2.4 s
                cut = max(0, bisect.bisect_right(self._change_s, now - KEEP_S) - 1)
                del self._change_s[:cut], self._activity[:cut]
                del self._power[:cut], self._energy_at_change_j[:cut]

    # -- the model -----------------------------------------------------------------------------

    def _now_s(self) -> float:
        return (time.monotonic_ns() - self._t0_ns) / 1e9

    def _power_w(self, activity: float) -> float:
        if self.board is None:
            return self.idle_w + (self.busy_w - self.idle_w) * activity
        idle = self.board.idle_point().power_w
        if activity == 0.0:
            return idle
        return idle + (self.board.loaded_point().power_w - idle) * activity

    def _energy_locked(self, t_s: float) -> float:
        i = max(0, bisect.bisect_right(self._change_s, t_s) - 1)
        return self._energy_at_change_j[i] + self._power[i] * (t_s - self._change_s[i])

    def _power_at(self, t_s: np.ndarray) -> np.ndarray:
        with self._lock:
            idx = np.clip(np.searchsorted(self._change_s, t_s, side="right") - 1, 0, None)
            return np.asarray(self._power)[idx]

    def _busy(self) -> float:
        with self._lock:
            return self._activity[-1]

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
        """The enforced power limit (the board's settings when modelled; else fixed)."""
        if self.board is not None:
            return round(self.board.settings.power_limit_w * 1000)
        return round(self.power_limit_w * 1000)

    def clocks_mhz(self) -> tuple[int, int]:
        """SM and memory clocks (the model's, busy or idle, when modelled)."""
        if self.board is None:
            return 1980, 2619
        point = self.board.loaded_point() if self._busy() > 0 else self.board.idle_point()
        return round(point.sm_clock_mhz), point.mem_clock_mhz

    def _top_w(self) -> float:
        return self.busy_w if self.board is None else self.board.part.max_power_limit_w

    def temperature_c(self) -> int:
        """Temperature rising with power."""
        return round(30 + 40 * self.power_instant().power_mw / 1000 / self._top_w())

    def clock_event_reasons(self) -> int:
        """GpuIdle (0x1) while idle; SwPowerCap (0x4) when the model is power-capped; else 0."""
        if self._busy() == 0.0:
            return 0x1
        if self.board is not None and self.board.loaded_point().power_capped:
            return 0x4
        return 0

    def utilization_pct(self) -> tuple[int, int]:
        """Utilisation from the activity."""
        act = self._busy()
        return round(100 * act), round(40 * act)

    def reconnect(self) -> None:
        """Nothing to reconnect."""
