"""CPU package (and DRAM) energy from Linux RAPL counters: ``/sys/class/powercap/intel-rapl*``.

Each RAPL zone has an ``energy_uj`` counter (µJ) that wraps at ``max_energy_range_uj``
(about every 10-60 minutes under load); the meter unwraps each zone and sums them:

    cpu        the package zones (``package-N``), a ``counter`` trace in joules
    cpu.dram   the DRAM zones (``dram``), where the platform has them

Core/uncore sub-zones are parts of their package and ``psys`` overlaps it: neither is added.
``intel-rapl-mmio`` zones repeat the package counter through MMIO and are skipped. Since
CVE-2020-8694 (PLATYPUS) ``energy_uj`` is readable by root only: where it cannot be read the
meter is absent and :func:`probe_rapl` says why. Tests pass a fake tree as ``root``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S, Semantics, Trace
from infergy.errors import MeterError
from infergy.meters.base import DEFAULT_CAPACITY, MeterHealth, RingBuffer, SourceInfo

DEFAULT_ROOT = Path("/sys/class/powercap")
_ZONE_DIR = re.compile(r"^intel-rapl:\d+(:\d+)?$")
_PERMISSION_HINT = (
    "RAPL needs root since CVE-2020-8694: run infergy as root, or grant read access, e.g. "
    'a udev rule: SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod 0444 '
    '/sys%p/energy_uj"'
)


def _read_text(path: Path) -> str:
    """Read one sysfs attribute (a seam for tests: root reads everything on the test host)."""
    return path.read_text(encoding="ascii").strip()


@dataclass(frozen=True)
class RaplZone:
    """One RAPL zone.

    Attributes:
        path: its sysfs directory.
        name: ``package-0``, ``dram``, ``core``, ``psys``...
        max_energy_range_uj: where ``energy_uj`` wraps.
    """

    path: Path
    name: str
    max_energy_range_uj: int

    @property
    def source_suffix(self) -> str | None:
        """``""`` for packages (source ``cpu``), ``.dram`` for DRAM, None for zones not used."""
        if self.name.startswith("package"):
            return ""
        return ".dram" if self.name == "dram" else None

    def energy_uj(self) -> int:
        """The zone's counter now, µJ (raises OSError/ValueError when unreadable)."""
        return int(_read_text(self.path / "energy_uj"))


@dataclass
class RaplProbe:
    """What RAPL offers on this host: the usable zones, or why there are none."""

    zones: list[RaplZone] = field(default_factory=list)
    reason: str | None = None
    hint: str | None = None

    @property
    def usable(self) -> bool:
        """True when at least one package zone can be read."""
        return self.reason is None and bool(self.zones)


def probe_rapl(root: Path = DEFAULT_ROOT) -> RaplProbe:
    """Find the package and DRAM zones under ``root`` and check each counter can be read."""
    if not root.is_dir():
        return RaplProbe(reason=f"{root} does not exist (no powercap support in this kernel/VM)")
    dirs = sorted(p for p in root.iterdir() if _ZONE_DIR.match(p.name))
    if not dirs:
        return RaplProbe(reason=f"no intel-rapl zones under {root} (not an Intel/AMD RAPL host?)")
    zones: list[RaplZone] = []
    for d in dirs:
        try:
            zone = RaplZone(d, _read_text(d / "name"), int(_read_text(d / "max_energy_range_uj")))
            if zone.source_suffix is None:
                continue
            zone.energy_uj()
        except PermissionError:
            return RaplProbe(
                reason=f"{d / 'energy_uj'} is not readable by this user", hint=_PERMISSION_HINT
            )
        except (OSError, ValueError) as err:
            return RaplProbe(reason=f"{d.name}: cannot read the zone: {err}")
        zones.append(zone)
    if not any(z.source_suffix == "" for z in zones):
        return RaplProbe(reason=f"no package zone under {root}")
    return RaplProbe(zones=zones)


class _Unwrapped:
    """One zone's counter, unwrapped at ``max_energy_range_uj`` into a running total (µJ)."""

    def __init__(self, zone: RaplZone, first_uj: int) -> None:
        self.zone = zone
        self.last_uj = first_uj
        self.total_uj = first_uj
        self.wraps = 0

    def update(self, raw_uj: int) -> None:
        delta = raw_uj - self.last_uj
        if delta < 0:  # wrapped (it cannot run backwards)
            delta += self.zone.max_energy_range_uj
            self.wraps += 1
        self.total_uj += delta
        self.last_uj = raw_uj


class RaplMeter:
    """CPU package (and DRAM) energy counters; implements :class:`~infergy.meters.base.Meter`.

    Args:
        clock: the session clock.
        root: the powercap directory (a fake tree in tests).
        interval_s: read period (RAPL updates every ~1 ms; 0.1 s keeps far from a wrap).
        capacity: samples kept per source.

    Raises:
        MeterError: no readable package zone (the reason and a hint in the message).
    """

    name = "rapl"

    def __init__(
        self,
        *,
        clock: SessionClock,
        root: Path = DEFAULT_ROOT,
        interval_s: float = 0.1,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        probe = probe_rapl(root)
        if not probe.usable:
            msg = f"RAPL is not available: {probe.reason}"
            raise MeterError(msg, hint=probe.hint)
        self._clock = clock
        self.interval_s = interval_s
        self.zones = probe.zones
        self._counters = [_Unwrapped(z, z.energy_uj()) for z in self.zones]
        suffixes = sorted({z.source_suffix for z in self.zones if z.source_suffix is not None})
        self._names = {s: f"cpu{s}" for s in suffixes}
        self._buffers = {name: RingBuffer(capacity) for name in self._names.values()}
        self._health = {name: MeterHealth() for name in self._names.values()}
        self.sample()

    def describe(self) -> list[SourceInfo]:
        """``cpu`` (packages) and, where present, ``cpu.dram``."""
        return [
            SourceInfo(
                name=name,
                kind="rapl",
                device=", ".join(z.name for z in self.zones if z.source_suffix == suffix),
                semantics=Semantics.COUNTER,
                nominal_period_ns=round(self.interval_s * NS_PER_S),
                unit="J",
                details={
                    "zones": ", ".join(
                        str(z.path) for z in self.zones if z.source_suffix == suffix
                    ),
                },
            )
            for suffix, name in self._names.items()
        ]

    def sample(self) -> None:
        """Read every zone once and append the sums (blocking: sysfs reads, µs each)."""
        t0 = self._clock.now_ns()
        try:
            for c in self._counters:
                c.update(c.zone.energy_uj())
        except (OSError, ValueError) as err:
            for health in self._health.values():
                health.error("error", f"RAPL read failed: {err}")
            return
        t_ns = (t0 + self._clock.now_ns()) // 2
        for suffix, name in self._names.items():
            total_uj = sum(c.total_uj for c in self._counters if c.zone.source_suffix == suffix)
            self._buffers[name].append(t_ns, total_uj / 1e6)
            self._health[name].samples += 1
            self._health[name].up = True

    @property
    def wraps(self) -> int:
        """Counter wraparounds seen so far (all zones)."""
        return sum(c.wraps for c in self._counters)

    async def run(self) -> None:
        """Read every ``interval_s`` until cancelled (reads in a worker thread)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await asyncio.to_thread(self.sample)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def snapshot(
        self, source: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Trace:
        """The samples of ``cpu`` or ``cpu.dram`` so far as a counter Trace (J)."""
        period_ns = round(self.interval_s * NS_PER_S)
        return self._buffer(source).trace(Semantics.COUNTER, period_ns, start_ns, end_ns)

    def samples_after(
        self, source: str, after_ns: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(t_ns, joules) of the samples with ``t_ns > after_ns`` (no full-buffer copy)."""
        return self._buffer(source).after(after_ns)

    def _buffer(self, source: str) -> RingBuffer:
        buffer = self._buffers.get(source)
        if buffer is None:
            msg = f"the RAPL meter has no source {source!r} (it has: {', '.join(self._buffers)})"
            raise MeterError(msg)
        return buffer

    def health(self) -> Mapping[str, MeterHealth]:
        """Health per source."""
        for name, health in self._health.items():
            health.dropped = self._buffers[name].dropped
        return self._health

    @property
    def source_names(self) -> Sequence[str]:
        """``cpu`` and maybe ``cpu.dram``."""
        return list(self._buffers)
