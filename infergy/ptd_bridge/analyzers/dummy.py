"""The dummy analyzer (PTDaemon device type 0): fixed readings at the update rate, no I/O.

Like PTDaemon's own dummy device it is for testing a set-up end to end without hardware; its
readings are PTDaemon's dummy values (23.31 W, 120 V, 0.19425 A, PF 1) and measure nothing.
"""

from __future__ import annotations

import threading
import time

from infergy.errors import AnalyzerRangeError, AnalyzerTimeoutError
from infergy.ptd_bridge.analyzers.base import ChannelReading, RangeState, Reading
from infergy.ptd_bridge.analyzers.specs import MODELS, ModelSpec

DUMMY_IDN = "infergy,DummyAnalyzer,0,1.0"
DUMMY_READING = (23.31, 120.0, 0.19425, 1.0)
"""(watts, volts, amps, pf): PTDaemon's dummy sample."""


class DummyAnalyzer:
    """A fake analyzer for set-up tests; implements :class:`~.base.Analyzer`.

    Args:
        reading: the (watts, volts, amps, pf) it always reports.
    """

    family = "dummy"

    def __init__(self, reading: tuple[float, float, float, float] = DUMMY_READING) -> None:
        self._reading = reading
        self.channels: tuple[int, ...] = (1,)
        self._interval_ns = 1_000_000_000
        self._next_ns = time.monotonic_ns()
        self._volts: float | None = None  # None: autorange
        self._amps: float | None = None
        self._closed = threading.Event()

    @property
    def spec(self) -> ModelSpec:
        """The dummy model."""
        return MODELS["dummy"]

    @property
    def idn(self) -> str:
        """The dummy's identity."""
        return DUMMY_IDN

    @property
    def simulated(self) -> bool:
        """Always: the dummy measures nothing."""
        return True

    def identify(self) -> str:
        """The dummy's identity."""
        return DUMMY_IDN

    def configure(self, update_interval_ms: int) -> None:
        """Set the update interval (any multiple of 10 ms up to 60 s)."""
        if update_interval_ms not in self.spec.update_intervals_ms:
            msg = f"the dummy analyzer cannot update every {update_interval_ms} ms"
            raise AnalyzerRangeError(msg, hint="use a multiple of 10 ms up to 60000 ms")
        self._interval_ns = update_interval_ms * 1_000_000
        self._next_ns = time.monotonic_ns() + self._interval_ns

    def _ranges(self) -> tuple[float, float]:
        _, v, a, _ = self._reading
        vr = self._volts if self._volts is not None else self.spec.pick_voltage_range(v)
        ar = self._amps if self._amps is not None else self.spec.pick_current_range(a)
        return vr, ar

    def read_ranges(self) -> RangeState:
        """The ranges set (or picked by "autorange" for the fixed reading)."""
        vr, ar = self._ranges()
        return RangeState(self._volts is None, vr, self._amps is None, ar)

    def set_voltage_range(self, volts: float | None) -> float | None:
        """Fix the voltage range, or autorange (``None``)."""
        self._volts = None if volts is None else self.spec.pick_voltage_range(volts)
        return self._volts

    def set_current_range(self, amps: float | None) -> float | None:
        """Fix the current range, or autorange (``None``)."""
        self._amps = None if amps is None else self.spec.pick_current_range(amps)
        return self._amps

    def read(self, timeout_s: float) -> Reading:
        """Sleep until the next update, then report the fixed reading."""
        wait_s = (self._next_ns - time.monotonic_ns()) / 1e9
        if wait_s > timeout_s or self._closed.wait(max(0.0, wait_s)):
            msg = "the dummy analyzer was closed" if self._closed.is_set() else "dummy timeout"
            raise AnalyzerTimeoutError(msg)
        now = time.monotonic_ns()
        self._next_ns += self._interval_ns * max(1, -(-(now - self._next_ns) // self._interval_ns))
        w, v, a, pf = self._reading
        vr, ar = self._ranges()
        u = self.spec.accuracy.uncertainty(w, vr, ar, pf)
        return Reading((ChannelReading(w, v, a, pf, vr, ar, u),), now)

    def close(self) -> None:
        """Wake a pending read and stop."""
        self._closed.set()
