"""The emulated instrument without a pty: commands, autorange, overrange, the power profile."""

from __future__ import annotations

import math
from collections import deque

import pytest

from infergy.errors import InputError
from infergy.ptd_bridge.analyzers.specs import MODELS
from infergy.ptd_bridge.emulator import AnalyzerEmulator
from infergy.ptd_bridge.emulator_control import apply_control_line
from infergy.ptd_bridge.instrument import Instrument
from infergy.ptd_bridge.instrument_scpi import Interpreter, nr3
from infergy.ptd_bridge.watts_profile import WattsProfile


def run(ins: Instrument, message: str, now_s: float = 0.0) -> tuple[str, bool]:
    """One message: its ``;``-joined replies and whether it finished (not waiting)."""
    pending, replies = deque(message.split(";")), []
    done = Interpreter(ins).execute(pending, replies, now_s)
    return ";".join(replies), done


def make(model="wt310", watts=100.0, **kw) -> Instrument:
    return Instrument(MODELS[model], WattsProfile.constant(watts), rate_s=0.1, **kw)


@pytest.mark.parametrize(
    ("value", "text"),
    [(104.75, "104.75E+00"), (0.20643, "206.43E-03"), (1.2345, "1.2345E+00"), (0.0, "0.0000E+00"),
     (20.0, "20.000E+00"), (-0.38, "-380.00E-03"), (999.996, "1.0000E+03"), (math.inf, "INF"),
     (math.nan, "NAN")],
)  # fmt: skip
def test_nr3_numbers_as_the_instrument_writes_them(value, text):
    assert nr3(value) == text


def test_overrange_and_no_data_on_the_wt210_are_9_9e37():
    assert (nr3(math.inf, wt210=True), nr3(math.nan, wt210=True)) == ("9.9E+37", "9.91E+37")


def test_short_and_long_forms_chains_and_the_error_queue():
    ins = make()
    assert run(ins, "*IDN?") == ("YOKOGAWA,WT310,C2EMU0001V,F1.04,infergy emulator", True)
    run(ins, ":NUMeric:NORMal:NUMber 2;:num:item1 U,1;:NUM:NORM:ITEM2 LAMBDA,1")
    assert run(ins, ":NUM:NUM?;:NUMERIC:NORMAL:ITEM2?") == ("2;LAMB,1", True)
    assert run(ins, ":STAT:ERR?")[0] == '0,"No error"'
    run(ins, ":BOGUS:THING 1;:INP:VOLT:RANG 123")
    assert run(ins, ":STAT:ERR?;:STAT:ERR?;:STAT:ERR?")[0] == (
        '113,"Undefined header";224,"Illegal parameter value";0,"No error"'
    )
    assert run(ins, ":CONF:VOLT:RANG?")[0] == ""  # the WT210 tree is not the WT310's


def test_wait_holds_the_message_until_the_next_update():
    ins = make()
    run(ins, ":STAT:FILT1 FALL")
    pending, replies = deque([":COMM:WAIT 1", ":STAT:EESR?", ":NUM:NORM:VAL?"]), []
    interpreter = Interpreter(ins)
    assert not interpreter.execute(pending, replies, 0.05) and replies == []
    ins.advance(0.1)
    assert interpreter.execute(pending, replies, 0.1)
    assert replies[0] == "1" and replies[1].startswith("230.00E+00,")
    assert run(ins, ":STAT:EESR?")[0] == "0"  # reading it cleared it


def test_updates_are_exact_interval_means_of_the_profile():
    prof = WattsProfile([0.0, 0.1, 0.1, 0.2], [100.0, 100.0, 300.0, 500.0])
    ins = Instrument(MODELS["wt310"], prof, rate_s=0.1)
    assert ins.advance(0.25) == 2 and ins.seq == 2
    assert ins.data[0]["P"] == pytest.approx(400.0)  # mean of the ramp 300 -> 500 over (0.1, 0.2]
    run(ins, ":RATE 250MS", now_s=0.3)
    assert ins.next_update_s() == pytest.approx(0.55)


def test_autorange_settles_in_a_few_updates_and_overrange_reads_inf():
    ins = make(watts=50.0, settle_updates=2)  # 0.229 A: the 0.5 A range eventually
    run(ins, ":INP:CURR:RANG 0.05")  # fixed, far too low: overrange
    ins.advance(0.1)
    assert math.isinf(ins.data[0]["I"]) and math.isinf(ins.data[0]["P"])
    assert run(ins, ":INP:CRAN?")[0] == "64" and ins.eesr & (1 << 6)
    ins.advance(1.0)
    assert ins.arange[0] == 0.05  # fixed ranges never move by themselves
    run(ins, ":INP:CURR:AUTO ON", now_s=1.0)
    ins.advance(1.1)
    assert ins.arange[0] == 0.05  # one update over: not yet
    ins.advance(1.2)
    assert ins.arange[0] == 0.5  # second: straight to the range that holds it
    ins.advance(1.3)
    assert ins.data[0]["I"] == pytest.approx(50 / (230 * 0.95))


def test_the_wt210_tree_and_its_fixed_item_order():
    ins = make("wt210", watts=40.0)
    run(ins, ":MEAS:ITEM:PF ON;:MEAS:ITEM:VA OFF")
    ins.advance(0.1)
    assert run(ins, ":MEAS:VAL?")[0] == "230.00E+00,183.07E-03,40.000E+00,950.00E-03"
    run(ins, ":CONF:VOLT:RANG 150;:CONF:CURR:AUTO OFF")
    assert run(ins, ":CONF:VOLT:AUTO?;:CONF:VOLT:RANG?")[0] == "0;150.00E+00"
    assert run(ins, ":NUM:NORM:VAL?")[0] == ""  # not its tree
    ins.advance(0.2)
    assert run(ins, ":MEAS:VAL?")[0].startswith("9.9E+37,")  # 230 V on the 150 V range


def test_sequence_encoded_watts_for_loss_checks():
    ins = make(encode_sequence=True)
    ins.advance(0.35)
    assert ins.seq == 3 and ins.data[0]["P"] == pytest.approx(100.3)


# -- the power profile ------------------------------------------------------------------------


def test_profile_integrals_are_exact():
    prof = WattsProfile([1.0, 2.0, 2.0, 4.0], [10.0, 10.0, 30.0, 50.0])
    assert prof.energy_j(0.0, 1.0) == pytest.approx(10.0)  # constant before the first point
    assert prof.energy_j(1.5, 3.0) == pytest.approx(5.0 + 35.0)
    assert prof.energy_j(4.0, 6.0) == pytest.approx(100.0)  # constant after the last
    assert prof.watts_at(2.0) == 30.0 and prof.mean_w(3.0, 4.0) == pytest.approx(45.0)
    prof.set_from(3.0, 5.0)
    assert prof.energy_j(2.0, 5.0) == pytest.approx(35.0 + 10.0)


def test_profile_csv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("t_s,watts\n0,100  # idle\n# a comment\n2.5,300\n")
    assert WattsProfile.from_csv(f).energy_j(0, 2.5) == pytest.approx(500.0)
    f.write_text("t_s,watts\n0,100\n1,lots\n")
    with pytest.raises(InputError, match=r"p\.csv:3: expected t_s,watts"):
        WattsProfile.from_csv(f)
    with pytest.raises(InputError, match="must not go backwards"):
        WattsProfile([1.0, 0.5], [1.0, 2.0])


def test_control_lines():
    emu = AnalyzerEmulator("wt310", watts=100.0)  # not started: no pty needed
    assert apply_control_line(emu, "watts 250") == "ok"
    assert emu.profile.watts_at(emu.now_s() + 1) == 250.0
    assert apply_control_line(emu, "fault garbage 2") == "ok" and emu._garbage_left == 2
    assert apply_control_line(emu, "fault slow 0.5") == "ok"
    assert apply_control_line(emu, "fault clear") == "ok" and emu._garbage_left == 0
    assert apply_control_line(emu, "status").startswith("ok seq=0 watts=250 ")
    assert apply_control_line(emu, "watts -3").startswith("error: cannot parse")
    assert apply_control_line(emu, "fault melt").startswith("error: unknown fault")
    assert apply_control_line(emu, "dance").startswith("error: unknown command")
