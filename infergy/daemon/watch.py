"""What ``infergy watch`` reads: live power per source, from local meters or a running serve.

Both readers give the same :class:`WatchRow` list, one row per source (``gpu0``..., ``gpus``,
``ac``, ``cpu``; ``--all`` adds the secondary signals such as ``gpu0.samples``):

- :class:`LocalWatch` opens the meters as ``infergy run`` chooses them, except that it never
  adds the emulated analyzer on its own (no meter is an error saying why), and follows them
  with the service's own :class:`~infergy.exporters.telemetry.LiveTelemetry` (power over the
  last second, energy since the watch started, GPU clocks and clock-event reasons);
- :class:`RemoteWatch` scrapes a running ``infergy serve``'s ``/metrics`` (the metric table of
  ARCHITECTURE.md) and reports energy since the watch's first scrape.

Every simulated source says so (``simulated``), from the meters or ``infergy_source_info``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from infergy.config.settings import Settings
from infergy.core.clock import SessionClock
from infergy.daemon.meters import MeterSet
from infergy.errors import InfergyError, MeterError
from infergy.exporters.telemetry import LiveTelemetry, Telemetry

PRIMARY = ("counter", "mean", "instant")
"""The ``device`` of a source's primary signal (the others are secondary: samples, avg, dram)."""
SCRAPE_TIMEOUT_S = 5.0
FIRST_SAMPLE_TIMEOUT_S = 3.0
_GPU = re.compile(r"gpu\d+")
_MHZ = 1e6


@dataclass(frozen=True)
class WatchRow:
    """One source, now.

    Attributes:
        source: ``gpu0``, ``gpus``, ``ac``, ``cpu``... (``gpu0.samples`` for a secondary signal).
        kind: ``nvml | analyzer | rapl | sim | replay``.
        power_w: power over the last ~second; None when unknown or stale.
        energy_j: energy since the watch started; None until some time is covered.
        sm_clock_mhz: a GPU's SM clock (None otherwise).
        memory_clock_mhz: a GPU's memory clock.
        clock_events: a GPU's active clock-event reasons (empty: none active); None when the
            GPU does not report them or for other sources.
        simulated: not a measurement (SIMULATED).
        up: the source works and its newest sample is fresh.
    """

    source: str
    kind: str
    power_w: float | None
    energy_j: float | None
    sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    clock_events: tuple[str, ...] | None = None
    simulated: bool = False
    up: bool = True


@dataclass
class LocalWatch:
    """The local meters, sampling while the watch runs: ``async with LocalWatch(...) as w``."""

    settings: Settings
    meters: Sequence[str] = ()
    all_signals: bool = False
    env: Any = None
    _meter_set: MeterSet | None = None
    _telemetry: LiveTelemetry | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> LocalWatch:
        clock = SessionClock()
        self._meter_set = ms = await MeterSet.open(
            self.meters, self.settings, clock, env=self.env, simulate_missing=False
        )
        self._tasks = [asyncio.create_task(m.run(), name=f"meter[{m.name}]") for m in ms.meters]
        self._telemetry = LiveTelemetry(ms.meters, clock=clock, simulated=ms.simulated)
        await ms.wait_ready()
        await self._first_samples()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, InfergyError):
                await task
        if self._meter_set is not None:
            await self._meter_set.aclose()

    @property
    def notes(self) -> list[str]:
        """What the meter choice says (a meter skipped and why, SIMULATED sources)."""
        return [] if self._meter_set is None else list(self._meter_set.notes)

    async def _first_samples(self) -> None:
        """Wait (bounded) until every source has sampled, so the first row has figures."""
        assert self._meter_set is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_SAMPLE_TIMEOUT_S
        sources = self._meter_set.sources()
        while loop.time() < deadline:
            if all(len(m.snapshot(i.name)) >= 2 for m, i in sources):
                return
            await asyncio.sleep(0.05)

    async def read(self) -> list[WatchRow]:
        """Every source now (a short poll off the loop)."""
        assert self._telemetry is not None
        await asyncio.to_thread(self._telemetry.poll)
        return rows_of(self._telemetry.telemetry(), all_signals=self.all_signals)


def rows_of(t: Telemetry, *, all_signals: bool = False) -> list[WatchRow]:
    """A telemetry snapshot as watch rows (GPU context joined on the source name)."""
    gpus = {g.gpu: g for g in t.gpus}
    rows = []
    for s in t.sources:
        primary = s.device in PRIMARY
        if not (primary or all_signals):
            continue
        g = gpus.get(s.source) if primary else None
        events = None
        if g is not None and g.clock_events:
            events = tuple(sorted(r for r, on in g.clock_events.items() if on))
        rows.append(
            WatchRow(
                source=s.source if primary else s.meter_source,
                kind=s.kind,
                power_w=s.power_w,
                energy_j=s.energy_j,
                simulated=s.simulated,
                up=s.up,
                clock_events=events,
                sm_clock_mhz=None if g is None or g.sm_clock_hz is None else g.sm_clock_hz / _MHZ,
                memory_clock_mhz=(
                    None if g is None or g.memory_clock_hz is None else g.memory_clock_hz / _MHZ
                ),
            )
        )
    return with_gpu_sum(rows)


def with_gpu_sum(rows: list[WatchRow]) -> list[WatchRow]:
    """Add ``gpus`` (the GPUs' sum) after the last GPU when there are two or more."""
    gpus = [r for r in rows if _GPU.fullmatch(r.source)]
    if len(gpus) < 2:
        return rows
    power = None if any(g.power_w is None for g in gpus) else sum(g.power_w or 0.0 for g in gpus)
    energy = None if any(g.energy_j is None for g in gpus) else sum(g.energy_j or 0.0 for g in gpus)
    total = WatchRow(
        "gpus", "nvml", power, energy, simulated=any(g.simulated for g in gpus),
        up=all(g.up for g in gpus),
    )  # fmt: skip
    at = rows.index(gpus[-1]) + 1
    return [*rows[:at], total, *rows[at:]]


@dataclass
class RemoteWatch:
    """A running ``infergy serve`` through its ``/metrics``: ``async with RemoteWatch(url)``."""

    url: str
    all_signals: bool = False
    _session: aiohttp.ClientSession | None = None
    _energy0: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    async def __aenter__(self) -> RemoteWatch:
        base = self.url.rstrip("/")
        if not re.match(r"^https?://[^/]+", base):
            msg = f"--from takes the service's URL, e.g. http://127.0.0.1:8765, not {self.url!r}"
            raise MeterError(msg)
        self.url = base if base.endswith("/metrics") else base + "/metrics"
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def read(self) -> list[WatchRow]:
        """Scrape once; energy is counted from the first scrape."""
        assert self._session is not None
        try:
            async with self._session.get(self.url) as resp:
                if resp.status != 200:
                    msg = f"{self.url}: HTTP {resp.status} {resp.reason}"
                    raise MeterError(msg, hint="is it `infergy serve`'s address?")
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            why = "no answer" if isinstance(err, TimeoutError) else str(err) or type(err).__name__
            msg = f"cannot read {self.url}: {why}"
            raise MeterError(msg, hint="is `infergy serve` running there?") from None
        rows = parse_metrics(text, all_signals=self.all_signals)
        if rows is None:
            msg = f"{self.url} has no infergy power metrics (infergy_power_watts...)"
            raise MeterError(msg, hint="point --from at a running `infergy serve`")
        out = []
        for row in rows:
            if row.energy_j is None:
                out.append(row)
                continue
            base = self._energy0.setdefault(row.source, row.energy_j)
            if row.energy_j < base:  # the service restarted: count from here
                base = self._energy0[row.source] = row.energy_j
            out.append(replace(row, energy_j=row.energy_j - base))
        return out


def parse_metrics(text: str, *, all_signals: bool = False) -> list[WatchRow] | None:
    """The Prometheus exposition of infergy as watch rows; None without any power metric."""
    power: dict[tuple[str, str], float] = {}
    energy: dict[tuple[str, str], float] = {}
    info: dict[tuple[str, str], dict[str, str]] = {}
    up: dict[tuple[str, str], bool] = {}
    clocks: dict[tuple[str, str], float] = {}
    events: dict[str, list[str]] = {}
    seen_power = False
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            key = (labels.get("source", ""), labels.get("device", ""))
            if s.name == "infergy_power_watts":
                power[key] = s.value
            elif s.name == "infergy_energy_joules_total":
                energy[key] = s.value
            elif s.name == "infergy_source_info":
                info[key] = labels
            elif s.name == "infergy_meter_up":
                up[key] = s.value >= 1
            elif s.name == "infergy_gpu_clock_hertz":
                clocks[(labels["gpu"], labels["domain"])] = s.value
            elif s.name == "infergy_gpu_clock_event_active":
                active = events.setdefault(labels["gpu"], [])
                if s.value >= 1:
                    active.append(labels["reason"])
        seen_power |= family.name in ("infergy_power_watts", "infergy_source")
    if not seen_power:
        return None
    rows = []
    for key in sorted(set(info) | set(power) | set(up), key=_order):
        source, device = key
        primary = device in PRIMARY
        if not (primary or all_signals):
            continue
        meta = info.get(key, {})
        is_gpu = primary and (source in events or (source, "sm") in clocks)
        gpu = source if is_gpu else None
        sm, mem = clocks.get((source, "sm")), clocks.get((source, "memory"))
        rows.append(
            WatchRow(
                source=source if primary else meta.get("meter_source", f"{source}.{device}"),
                kind=meta.get("kind", "?"),
                power_w=power.get(key),
                energy_j=energy.get(key),
                sm_clock_mhz=None if gpu is None or sm is None else sm / _MHZ,
                memory_clock_mhz=None if gpu is None or mem is None else mem / _MHZ,
                clock_events=tuple(sorted(events[source]))
                if primary and source in events
                else None,
                simulated=meta.get("simulated") == "true",
                up=up.get(key, True),
            )
        )
    return with_gpu_sum(rows)


def _order(key: tuple[str, str]) -> tuple[int, int, str, str]:
    """GPUs first (by index), then the rest by name; primary signals before secondary ones."""
    source, device = key
    m = re.fullmatch(r"gpu(\d+)", source)
    return (0 if m else 1, int(m.group(1)) if m else 0, source, "" if device in PRIMARY else device)
