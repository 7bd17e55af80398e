"""Analyzer drivers and specs: the accuracy table, ranges, device types, reply parsing."""

from __future__ import annotations

import math
import time
from collections import deque

import pytest

from infergy.core.accuracy import WT210_ACCURACY, WT300_ACCURACY, accuracy_for_driver
from infergy.errors import (
    AnalyzerProtocolError,
    AnalyzerRangeError,
    AnalyzerTimeoutError,
    InputError,
)
from infergy.ptd_bridge.analyzers.base import parse_number
from infergy.ptd_bridge.analyzers.dummy import DummyAnalyzer
from infergy.ptd_bridge.analyzers.lines import parse_framing
from infergy.ptd_bridge.analyzers.specs import MODELS, device_type, model_from_idn
from infergy.ptd_bridge.analyzers.wt210 import YokogawaWT210
from infergy.ptd_bridge.analyzers.yokogawa import YokogawaWT300, format_interval


def test_uncertainty_follows_the_range_in_use():
    # 100 W at PF 1 on 300 V x 1 A: 0.1 % + 0.05 % x 300 / 100 = 0.25 %
    assert WT300_ACCURACY.uncertainty(100.0, 300.0, 1.0, 1.0) == pytest.approx(0.0025)
    # the same 100 W on 600 V x 20 A: the range term dominates, far above MLPerf's 1 %
    assert WT300_ACCURACY.uncertainty(100.0, 600.0, 20.0, 1.0) == pytest.approx(0.061)
    # PF 0.5: 0.1 % + 0.05 % x 300 x 0.5 / 100 + 0.2 % x tan(60°)
    expected = 0.001 + 0.0005 * 1.5 + 0.002 * math.tan(math.radians(60))
    assert WT300_ACCURACY.uncertainty(100.0, 300.0, 1.0, 0.5) == pytest.approx(expected)
    assert WT210_ACCURACY.uncertainty(100.0, 300.0, 1.0, 1.0) == pytest.approx(0.004)
    for bad in ((0.0, 300, 1, 1), (-1.0, 300, 1, 1), (100, math.nan, 1, 1), (100, 300, 1, 0)):
        assert math.isnan(WT300_ACCURACY.uncertainty(*bad))


def test_ranges_are_picked_like_ptdaemon_does():
    wt310 = MODELS["wt310"]
    assert wt310.pick_voltage_range(230.1) == 300.0
    assert wt310.pick_current_range(0.60412) == 1.0
    assert wt310.pick_current_range(0.005) == 0.005
    with pytest.raises(AnalyzerRangeError, match="above the WT310's largest range 20 A"):
        wt310.pick_current_range(25)
    with pytest.raises(AnalyzerRangeError):
        wt310.pick_voltage_range(0)


def test_models_and_device_types():
    assert model_from_idn("YOKOGAWA,WT310E,C2PH13047V,F1.03").key == "wt310e"
    assert model_from_idn("YOKOGAWA,WT333,C2SF14011V,F1.01EM").elements == 3
    with pytest.raises(AnalyzerProtocolError, match="not a model this bridge drives"):
        model_from_idn("ACME,PA-9000,1,1")
    assert device_type(49).driver_name("WT310E") == "YokogawaWT310E"
    assert device_type(52).driver_name("WT333E") == "YokogawaWT330E"
    assert device_type(77).driver_name("WT333E") == "YokogawaWT330_multichannel"
    assert device_type(549).driver_name("WT310") == "YokogawaWT310_DC"
    with pytest.raises(InputError, match=r"device type 35 \(Yokogawa WT500\) is not supported"):
        device_type(35)
    assert accuracy_for_driver("YokogawaWT330_multichannel") is WT300_ACCURACY
    assert accuracy_for_driver("YokogawaWT210") is WT210_ACCURACY
    assert accuracy_for_driver("YokogawaWT5000") is None


def test_numbers_and_framing():
    assert parse_number("104.75E+00") == 104.75
    assert all(math.isnan(parse_number(x)) for x in ("INF", "-INF", "NAN", "9.9E+37", "9.91E+37"))
    with pytest.raises(ValueError):
        parse_number("#$%")
    assert parse_framing("8n1")[0] == 8 and format_interval(250) == "250MS"
    assert format_interval(2000) == "2S"
    with pytest.raises(InputError):
        parse_framing("9X3")


class ScriptedLine:
    """A Line that answers from a script (the driver's parsing and recovery, without a port)."""

    def __init__(self, replies):
        self.replies = deque(replies)
        self.sent: list[str] = []

    def write(self, command):
        self.sent.append(command)

    def read_line(self, timeout_s):
        if not self.replies:
            raise AnalyzerTimeoutError("no reply")
        return self.replies.popleft(), time.monotonic_ns()

    def discard_input(self):
        return 0

    def close(self):
        pass


GOOD = b"1;230.00E+00,549.20E-03,120.00E+00,950.00E-03,300.00E+00,1.0000E+00"


def test_wt300_driver_reads_synchronised_to_the_update_and_recovers_from_garbage():
    line = ScriptedLine([b"0;stale", b"YOKOGAWA,WT310,C2,F1", GOOD, b"\xfe#@!garbage", GOOD[2:]])
    drv = YokogawaWT300(line)
    assert drv.identify() == "YOKOGAWA,WT310,C2,F1"  # a stale reply is skipped
    r = drv.read(1.0)
    assert line.sent[-1] == ":COMM:WAIT 1;:STAT:EESR?;:NUM:NORM:VAL?"
    (ch,) = r.channels
    assert (ch.watts, ch.volts, ch.amps, ch.pf) == (120.0, 230.0, 0.5492, 0.95)
    assert (ch.volt_range_v, ch.current_range_a, r.garbage) == (300.0, 1.0, 0)
    assert ch.uncertainty == pytest.approx(WT300_ACCURACY.uncertainty(120, 300, 1, 0.95))
    r2 = drv.read(1.0)  # garbage, then the same update asked again without waiting
    assert r2.garbage == 1 and line.sent[-1] == ":NUM:NORM:VAL?" and r2.channels == r.channels


def test_wt300_driver_gives_up_after_garbage_twice_and_checks_errors():
    line = ScriptedLine([b"YOKOGAWA,WT310,C2,F1", b"??", b"1,2"])
    drv = YokogawaWT300(line)
    drv.identify()
    with pytest.raises(AnalyzerProtocolError, match="garbage from the analyzer"):
        drv.read(1.0)
    line.replies.extend([b'0,"No error"', b"0", b'224,"Illegal parameter value"'])
    drv.configure(100)
    assert ":RATE 100MS" in line.sent and ":NUM:NORM:ITEM6 IRAN,1" in line.sent
    with pytest.raises(AnalyzerProtocolError, match="Illegal parameter value"):
        drv.set_current_range(2.2)
    assert line.sent[-2] == ":INP:CURR:AUTO OFF;:INP:CURR:RANG 5"
    with pytest.raises(AnalyzerRangeError, match="cannot update every 300 ms"):
        drv.configure(300)


def test_wt210_driver_reads_its_fixed_items_and_ranges():
    reply = b"1;230.00E+00,183.07E-03,40.000E+00,950.00E-03;300.00E+00;500.00E-03"
    line = ScriptedLine([b"YOKOGAWA,760401,91K223456,F3.01", reply, b"9.9E+37,1,2,3;300;1"])
    drv = YokogawaWT210(line)
    drv.identify()
    (ch,) = drv.read(1.0).channels
    assert (ch.watts, ch.amps, ch.current_range_a) == (40.0, 0.18307, 0.5)
    assert line.sent[-1] == ":COMM:WAIT 1;:STAT:EESR?;:MEAS:VAL?;:CONF:VOLT:RANG?;:CONF:CURR:RANG?"
    with pytest.raises(AnalyzerProtocolError, match="not a WT210"):
        YokogawaWT210(ScriptedLine([b"YOKOGAWA,WT310,C2,F1"])).identify()


def test_channels_beyond_the_model_are_refused():
    with pytest.raises(AnalyzerRangeError, match="elements 1-1"):
        YokogawaWT300(ScriptedLine([b"YOKOGAWA,WT310,C2,F1"]), channels=(1, 2)).identify()


def test_dummy_analyzer_ticks_at_its_interval():
    dummy = DummyAnalyzer()
    dummy.configure(50)
    t0 = time.monotonic()
    readings = [dummy.read(1.0) for _ in range(3)]
    assert 0.1 <= time.monotonic() - t0 < 0.5
    assert readings[0].channels[0].watts == 23.31
    assert dummy.set_current_range(0.7) == 1.0 and not dummy.read_ranges().amps_auto
    dummy.close()
    with pytest.raises(AnalyzerTimeoutError):
        dummy.read(1.0)
