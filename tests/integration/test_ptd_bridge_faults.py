"""Faults between the bridge and the analyzer, injected in the emulator, over real ptys and TCP."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from infergy.formats.ptd import parse_ptd_log
from tests.integration.ptd_support import RawClient, console_text, rig, wait_for

pytestmark = pytest.mark.integration


def _kinds(lines: list[str]) -> list[str]:
    """'ok', 'bad' or 'missed' per RL sample line."""
    log = parse_ptd_log("\n".join(lines[1:]))
    return ["missed" if w == -2 else "bad" if w == -1 else "ok" for w in log.watts]


def test_an_unplugged_analyzer_gives_missed_samples_then_the_bridge_reconnects(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=150.0) as (emu, bridge):
            c = await RawClient.connect(bridge.port)
            other = await RawClient.connect(bridge.port)
            assert (await c.req("Go,100,0,unplug"))[0].startswith("Starting untimed")
            b = bridge.bridge
            await wait_for(lambda: len(b.measurement.samples) >= 3)
            emu.unplug(0.8)
            await other.close()  # a client leaving changes nothing either
            await wait_for(lambda: b.stats.reconnects >= 1)
            await wait_for(lambda: all(s.kind == "ok" for s in b.measurement.samples[-3:]))
            assert await c.one("R*") == "Watts,150.000000"  # the same connection, still served
            assert await c.one("Stop") == "Stopping untimed measurement"
            kinds = _kinds(await c.req("RL,*"))
            await c.close()
            return kinds, b.stats

    kinds, stats = asyncio.run(scenario())
    assert kinds[:3] == ["ok"] * 3 and kinds[-3:] == ["ok"] * 3
    gap = kinds[kinds.index("missed") : len(kinds) - kinds[::-1].index("missed")]
    assert set(gap) == {"missed"}  # one contiguous gap of -2 samples, nothing invented
    assert 5 <= len(gap) <= 20  # 0.8 s unplugged + reconnect backoff, at 100 ms a sample
    assert stats.disconnects == 1 and stats.reconnects == 1
    console = console_text(tmp_path)
    assert "ERROR: Lost connection to YokogawaWT310" in console
    assert "WARNING: Missed 1 samples" in console
    assert ": Reconnected to YokogawaWT310 after" in console


def test_garbage_from_the_analyzer_is_counted_and_skipped(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=90.0) as (emu, bridge):
            c = await RawClient.connect(bridge.port)
            await c.req("Go,100,0,garbage")
            b = bridge.bridge
            await wait_for(lambda: len(b.measurement.samples) >= 2)
            emu.garbage(1)  # one reply: the driver asks again and gets the same update
            await wait_for(lambda: b.stats.garbage >= 1)
            n = len(b.measurement.samples)
            emu.garbage(2)  # the reply and the retry: that update is a bad sample
            await wait_for(lambda: b.stats.bad >= 1)
            await wait_for(lambda: len(b.measurement.samples) >= n + 4)
            await c.req("Stop")
            watts = await c.one("Watts")
            kinds = _kinds(await c.req("RL,*"))
            await c.close()
            return kinds, watts, b.stats, emu.counters

    kinds, watts, stats, emu_counters = asyncio.run(scenario())
    assert emu_counters["garbage_sent"] == 3
    assert stats.garbage == 1 and stats.bad == 1 and stats.missed == 0
    assert kinds.count("bad") == 1 and "missed" not in kinds
    n = len(kinds)
    assert watts == f"Watts,90.000000,90.000000,90.000000,{n},1,{n - 1}"
    assert "ERROR: Garbage from YokogawaWT310 skipped" in console_text(tmp_path)


def test_a_stalled_analyzer_gives_missed_samples_and_recovers(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=60.0) as (emu, bridge):
            c = await RawClient.connect(bridge.port)
            await c.req("Go,100,0,stall")
            b = bridge.bridge
            await wait_for(lambda: len(b.measurement.samples) >= 2)
            emu.stall(1.5)
            await wait_for(lambda: b.stats.missed >= 3)
            await wait_for(lambda: b.stats.reconnects >= 1)
            await wait_for(lambda: all(s.kind == "ok" for s in b.measurement.samples[-3:]))
            await c.req("Stop")
            kinds = _kinds(await c.req("RL,*"))
            await c.close()
            return kinds, b.stats

    kinds, stats = asyncio.run(scenario())
    assert stats.errors.get("timeout", 0) >= 1
    assert kinds[-3:] == ["ok"] * 3 and "bad" not in kinds
    assert 8 <= kinds.count("missed") <= 30  # 1.5 s of stall at 100 ms, plus resynchronising


def test_a_slow_analyzer_gives_late_samples_not_lost_ones(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=75.0) as (emu, bridge):
            c = await RawClient.connect(bridge.port)
            await c.req("Go,100,0,slow")
            b = bridge.bridge
            await wait_for(lambda: len(b.measurement.samples) >= 3)
            emu.slow(0.04, duration_s=1.0)  # every reply 40 ms late: less than an update
            await asyncio.sleep(1.3)
            await c.req("Stop")
            await c.close()
            return list(b.measurement.samples), b.sampler.late_updates

    samples, late = asyncio.run(scenario())
    assert all(s.kind == "ok" for s in samples)  # nothing missed, nothing bad
    assert late >= 8
    assert sum(s.late for s in samples) == late
    gaps_ms = [(b.t_ns - a.t_ns) / 1e6 for a, b in itertools.pairwise(samples)]
    assert all(70 <= g <= 130 for g in gaps_ms), gaps_ms  # stamped at their update times
    assert "WARNING: Analyzer replies are late" in console_text(tmp_path)
