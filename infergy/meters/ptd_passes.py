"""MLPerf's ranging and testing passes as the ``ptd`` meter runs them (a mixin of ``PtdMeter``).

An MLPerf power run measures the same load twice. The ranging pass (``<mark>_ranging``) lets the
analyzer autorange volts and amps while the meter keeps the largest of each it sees; the testing
pass (``<mark>_testing``) fixes the voltage range at the largest volts seen and the current range
at 1.1x the largest amps seen. :meth:`MlperfPasses.stop` ends the measurement, keeps the server's
``Watts`` and ``Uncertainty`` summaries and restores the ranges found at connection, as
power-dev does. Every pass reads the unread samples before and after its ``Stop``, so a sample
is counted in the pass it belongs to.

The passes drive the meter's connection and polling; :class:`MlperfPasses` names what it needs
from them as abstract methods and :class:`~infergy.meters.ptd.PtdMeter` provides them.
"""

from __future__ import annotations

import abc

from infergy.errors import AnalyzerRangeError
from infergy.formats import ptd_protocol as p
from infergy.meters.ptd_client import PtdConnection


class MlperfPasses(abc.ABC):
    """MLPerf's ranging and testing passes over a PTD connection.

    Attributes (set by the meter):
        phase: ``None`` (not measuring), ``run``, ``ranging`` or ``testing``.
        initial_ranges: the ranges read at the first connection (:meth:`stop` restores them).
        testing_ranges: the (volts, amps) asked for by :meth:`testing`.
        summaries: the server's last ``Watts`` and ``Uncertainty`` replies (after :meth:`stop`).
    """

    phase: str | None
    initial_ranges: p.RangeGroup | None
    testing_ranges: tuple[float, float] | None
    summaries: dict[str, str]
    _ranges: p.RangeGroup
    _ranging_max: list[float]  # volts, amps: kept by the meter while phase is "ranging"

    @abc.abstractmethod
    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until the meter is connected."""

    @abc.abstractmethod
    async def poll(self) -> int:
        """Read the unread samples now (``RL``); returns how many were new."""

    @abc.abstractmethod
    def _session(self) -> PtdConnection:
        """The live connection (AnalyzerConnectionError when there is none)."""

    @abc.abstractmethod
    async def _go(self) -> None:
        """Start a measurement marked for the current phase."""

    async def ranging(self) -> None:
        """Start the ranging pass: autorange on both quantities, ``Go`` with ``<mark>_ranging``.

        Raises:
            AnalyzerError: the server refused, or the connection dropped meanwhile (the meter
                reconnects by itself; the pass can be started again).
        """
        await self.wait_connected()
        await self.poll()
        await self._stop_measurement()
        await self.poll()  # what came before the stop is not part of the ranging pass
        for quantity in ("V", "A"):
            await self._set_range(quantity, None)
        self._ranging_max = [0.0, 0.0]
        self.phase = "ranging"
        await self._go()

    async def testing(self, *, current_margin: float = 1.1) -> tuple[float, float]:
        """End ranging, fix the ranges from what it saw, start the testing pass.

        The voltage range is set at the largest volts seen, the current range at
        ``current_margin`` times the largest amps seen (MLPerf's rule).

        Returns:
            The (volts, amps) asked for with ``SR``.

        Raises:
            AnalyzerRangeError: no valid ranging sample, or the server refused the ranges.
            AnalyzerConnectionError: the connection dropped meanwhile.
        """
        await self.wait_connected()
        await self.poll()
        await self._stop_measurement()
        await self.poll()
        volts, amps = self._ranging_max
        if volts <= 0 or amps <= 0:
            msg = "no valid sample in the ranging pass: cannot choose the testing ranges"
            raise AnalyzerRangeError(msg, hint="run ranging() long enough for a few samples")
        amps *= current_margin
        await self._set_range("V", volts)
        await self._set_range("A", amps)
        self.testing_ranges = (volts, amps)
        self.phase = "testing"
        await self._go()
        return volts, amps

    async def stop(self) -> None:
        """End the measurement (reading everything first) and restore the initial ranges."""
        await self.wait_connected()
        await self.poll()
        await self._stop_measurement()
        await self.poll()
        conn = self._session()
        self.summaries = {
            "watts": await conn.request("Watts"),
            "uncertainty": await conn.request("Uncertainty"),
        }
        self.phase = None
        init = self.initial_ranges
        if init is not None:  # power-dev's rule: a fixed range if one was set, else Auto
            volts = init.volts_range_v if init.volts_auto == 0 and init.volts_range_v > 0 else None
            amps = init.amps_range_a if init.amps_auto == 0 and init.amps_range_a > 0 else None
            await self._set_range("V", volts)
            await self._set_range("A", amps)

    async def restart_measurement(self) -> None:
        """``Stop`` then ``Go`` again, ranges unchanged (bounds the PTD server's state).

        A long-running service does this now and then: a PTD server keeps every sample of a
        measurement until the next ``Go``.
        """
        await self.poll()
        await self._stop_measurement()
        await self.poll()
        await self._go()

    async def _stop_measurement(self) -> None:
        await self._session().stop()

    async def _set_range(self, quantity: str, value: float | None) -> None:
        conn = self._session()
        await conn.set_range(quantity, value)
        self._ranges = await conn.read_ranges()
