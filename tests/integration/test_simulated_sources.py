"""A simulated number is never shown as a measurement: the sources say so, everyone reads it.

The emulated analyzer standing in for a real one (``ac``), the one asked for (``--meter sim``,
source ``sim``) and any PTD server whose instrument is simulated: their sources describe
themselves as simulated, and ``/metrics`` (``infergy_source_info{simulated=...}``) shows that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from infergy.config.settings import Settings
from infergy.core.clock import SessionClock
from infergy.daemon.meters import MeterSet
from infergy.exporters.prometheus import build_registry
from infergy.exporters.telemetry import LiveTelemetry
from infergy.meters.base import Meter
from infergy.meters.ptd import PtdMeter
from tests.integration.ptd_support import rig

pytestmark = pytest.mark.integration


def _settings() -> Settings:
    return Settings.model_validate({"meters": {"rapl": False}})


async def _sampled(meters: Sequence[Meter], telemetry: LiveTelemetry, wait_s: float) -> None:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(m.run(), name=f"meter[{m.name}]") for m in meters]
        for m in meters:
            if isinstance(m, PtdMeter):
                await m.wait_connected(15)
        await asyncio.sleep(wait_s)
        await asyncio.to_thread(telemetry.poll)
        for task in tasks:
            task.cancel()


def _source_info(telemetry: LiveTelemetry, source: str) -> dict[str, str]:
    registry = build_registry(telemetry)
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "infergy_source_info" and s.labels["meter_source"] == source:
                return dict(s.labels)
    raise AssertionError(f"no infergy_source_info for {source}")


def test_the_stand_in_analyzer_is_simulated_on_metrics() -> None:
    """``infergy serve`` without an analyzer: /metrics said simulated="false" for ``ac``."""

    async def scenario() -> tuple[dict[str, str], list[str]]:
        clock = SessionClock()
        async with await MeterSet.open((), _settings(), clock) as meters:
            names = [info.name for _, info in meters.sources()]
            assert "ac" in names, f"no stand-in analyzer among {names}: {meters.notes}"
            telemetry = LiveTelemetry(meters.meters, clock=clock)
            await asyncio.to_thread(telemetry.poll)  # before any sample, too
            await _sampled(meters.meters, telemetry, 0.6)
            return _source_info(telemetry, "ac"), meters.notes

    labels, notes = asyncio.run(scenario())
    assert labels["simulated"] == "true", labels
    assert any(n.startswith("ac: SIMULATED") and "no analyzer is configured" in n for n in notes)


def test_meter_sim_is_a_source_named_sim_with_its_own_note() -> None:
    async def scenario() -> tuple[list[tuple[str, bool]], list[str]]:
        async with await MeterSet.open(["sim"], _settings(), SessionClock()) as meters:
            return [(i.name, i.simulated) for _, i in meters.sources()], meters.notes

    sources, notes = asyncio.run(scenario())
    assert sources == [("sim", True)], sources
    assert any(n.startswith("sim: SIMULATED") and "--meter sim" in n for n in notes), notes
    assert not any("no analyzer is configured" in n for n in notes), notes


def test_a_ptd_meter_learns_from_the_bridge_that_its_analyzer_is_simulated(
    tmp_path: Path,
) -> None:
    """``infergy ptd-bridge`` in front of ``infergy analyzer-sim``, then ``--meter ptd://``."""

    async def scenario() -> tuple[bool, bool, dict[str, str]]:
        async with rig(tmp_path, watts=150.0, log=True, interval_ms=250) as (_, bridge):
            clock = SessionClock()
            meter = PtdMeter(clock=clock, port=bridge.port, interval_ms=250, offset_exchanges=0)
            telemetry = LiveTelemetry([meter], clock=clock)
            await asyncio.to_thread(telemetry.poll)  # before it connected: not known yet
            before = meter.describe()[0].simulated
            await _sampled([meter], telemetry, 0.6)
            return before, meter.describe()[0].simulated, _source_info(telemetry, "ac")

    before, after, labels = asyncio.run(scenario())
    assert not before  # nothing is claimed before the server said it
    assert after, "the bridge's Identify said SIMULATED, the meter did not carry it"
    assert labels["simulated"] == "true", labels
    log = (tmp_path / "ptd.log").read_text(encoding="utf-8")
    assert ",NOTICE,SIMULATED analyzer (infergy's emulator)" in log  # analyze keeps it
