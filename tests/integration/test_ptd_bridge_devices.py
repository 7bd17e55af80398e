"""Each device type the bridge drives, end to end: WT333E multichannel, WT210, dummy; ranges."""

from __future__ import annotations

import asyncio
import re

import pytest

from infergy.formats.ptd import parse_ptd_log
from tests.integration.ptd_support import RawClient, rig, wait_for

pytestmark = pytest.mark.integration

CH_GROUP = r"Watts,{w},Volts,230\.000000,Amps,{a},PF,0\.950000"


def test_wt333e_multichannel_lines_sum_first_then_each_channel(tmp_path):
    async def scenario():
        async with rig(tmp_path, model="wt333e", device=77, channels=(1, 3), watts=300.0) as (
            _,
            bridge,
        ):
            c = await RawClient.connect(bridge.port)
            ident = await c.one("Identify")
            assert ident.startswith("YokogawaWT330_multichannel,1000,")
            assert ",mode=power,1,1,2,0,0,no_cal_date,YOKOGAWA;WT333E;" in ident
            await c.req("Go,100,0,multi")
            await wait_for(lambda: len(bridge.bridge.measurement.samples) >= 3)
            assert await c.one("Stop") == "Stopping untimed measurement"
            rl = await c.req("RL,*,*")
            rr = await c.one("RR,*")
            unc = await c.one("Uncertainty,*")
            await c.close()
            return rl, rr, unc

    rl, rr, unc = asyncio.run(scenario())
    assert rl[0] == f"Last {len(rl) - 1} samples"
    # 300 W shared by three elements; channels 1 and 3 read: 100 W each, 200 W in the sum
    line_re = re.compile(
        r"Time,[\d: .-]+,Watts,200\.000000,Volts,-1\.000000,Amps,-1\.000000,PF,-1\.000000,"
        + ",".join(f"Ch{n}," + CH_GROUP.format(w=r"100\.000000", a=r"0\.457670") for n in (1, 3))
    )
    assert all(line_re.fullmatch(x) for x in rl[1:]), rl[1]
    groups = rr.split(",")[1:]
    assert rr.startswith("Ranges,-1,-1.000000,-1,-1.000000,") and len(groups) == 12
    assert unc.startswith("Uncertainty,") and len(unc.split(",")) == 1 + 3 * 7
    log = parse_ptd_log((tmp_path / "ptd.log").read_text())
    assert set(log.channels) == {"Ch1", "Ch3"} and log.marks[0] == "multi"
    assert list(log.watts) == [200.0] * len(log)


def test_wt210_in_its_488_2_mode(tmp_path):
    async def scenario():
        async with rig(tmp_path, model="wt210", device=8, watts=40.0) as (_, bridge):
            c = await RawClient.connect(bridge.port)
            ident = await c.one("Identify")
            await c.req("Go,100,0")
            await wait_for(lambda: len(bridge.bridge.measurement.samples) >= 2)
            await c.req("Stop")
            rl = await c.req("RL")
            await c.close()
            return ident, rl

    ident, rl = asyncio.run(scenario())
    assert ident.startswith("YokogawaWT210,1000,") and ident.endswith(
        ",YOKOGAWA;760401;C2EMU0001V;F1.04;infergy emulator,SIMULATED"
    )
    assert all(",Watts,40.000000,Volts,230.000000,Amps,0.183070,PF,0.950000" in x for x in rl[1:])
    assert parse_ptd_log((tmp_path / "ptd.log").read_text()).marks[0] == "notset"


def test_the_dummy_analyzer_device_type_0(tmp_path):
    async def scenario():
        async with rig(tmp_path, device=0, interval_ms=100) as (_, bridge):
            c = await RawClient.connect(bridge.port)
            ident = await c.one("Identify")
            await c.req("Go,100,0")
            rl1 = await c.req("RL,1")  # waits for the next sample
            await c.close()
            return ident, rl1

    ident, rl1 = asyncio.run(scenario())
    assert ident.startswith("Dummy,1000,") and ident.endswith(
        ",infergy;DummyAnalyzer;0;1.0,SIMULATED"
    )
    assert rl1[0] == "Last 1 samples"
    assert rl1[1].endswith(",Watts,23.310000,Volts,120.000000,Amps,0.194250,PF,1.000000")


def test_fixed_ranges_do_not_autorange_and_overrange_reads_bad(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=100.0) as (emu, bridge):
            c = await RawClient.connect(bridge.port)
            assert await c.one("SR,A,0.6") == "Range A changed"  # -> the 1 A range
            assert await c.one("SR,V,250") == "Range V changed"  # -> the 300 V range
            assert (await c.one("SR,A,25")).startswith("Error: current range 25 A is above")
            assert await c.one("SR,A,1,2") == "Invalid channel"
            await c.req("Go,100,0,over")
            b = bridge.bridge
            await wait_for(lambda: len(b.measurement.samples) >= 2)
            emu.set_watts(400.0)  # 1.83 A: above 140 % of the 1 A range
            await wait_for(lambda: b.stats.bad >= 4)
            status = emu.status()
            emu.set_watts(100.0)
            await wait_for(lambda: b.measurement.samples[-1].kind == "ok")
            await c.req("Stop")
            rr = await c.one("RR")
            await c.close()
            return status, rr

    status, rr = asyncio.run(scenario())
    assert (status["current_range"], status["amps_auto"]) == ("1", "0")  # it stayed put
    assert rr == "Ranges,0,1.000000,0,300.000000"
