"""Yokogawa WT210 driver: the instrument's "488.2" mode (``:CONFigure`` / ``:MEASure`` trees).

The WT210 must be switched to the 488.2 mode on its front panel (LOCAL menu); otherwise its
replies do not parse (yokotool's hint, shared/research/ptd.md §4.2). Everything else (the wait
for an update, garbage recovery, range checks) is the WT300 driver's.
"""

from __future__ import annotations

from infergy.errors import AnalyzerProtocolError
from infergy.ptd_bridge.analyzers.base import ChannelReading, parse_number
from infergy.ptd_bridge.analyzers.specs import MODELS, ModelSpec
from infergy.ptd_bridge.analyzers.yokogawa import YokogawaWT300


class YokogawaWT210(YokogawaWT300):
    """A WT210 in its "488.2" mode: the ``:CONFigure`` / ``:MEASure`` trees.

    Items are switched on by name (``:MEASure:ITEM:<name> ON``) and come back in the
    instrument's fixed order (V, A, W, PF); the ranges in use are asked with every reading.
    Its ``*IDN?`` names the model code (``760401``), not ``WT210``.
    """

    family = "wt210"
    _VOLT = ":CONF:VOLT"
    _CURR = ":CONF:CURR"
    _MODE = ":CONF:MODE"
    _RATE = ":SAMP:RATE"
    _ITEMS_OFF = ("VA", "VAR", "DEGR", "VHZ", "AHZ", "WH", "WHP", "WHM", "AH", "AHP", "AHM")

    def _model(self, idn: str) -> ModelSpec:
        model = idn.split(",")[1].strip().upper() if "," in idn else ""
        if model.startswith("WT") and model != "WT210":
            msg = f"the analyzer identifies as {idn!r}, not a WT210"
            raise AnalyzerProtocolError(msg, hint="device type 8 is the WT210")
        return MODELS["wt210"]

    def _format_commands(self) -> list[str]:
        return []  # the 488.2 mode answers in ASCII only

    def _item_commands(self) -> list[str]:
        off = [f":MEAS:ITEM:{name} OFF" for name in self._ITEMS_OFF]
        return [*off, *(f":MEAS:ITEM:{name} ON" for name in ("V", "A", "W", "PF"))]

    def _value_query(self) -> str:
        return f":MEAS:VAL?;{self._VOLT}:RANG?;{self._CURR}:RANG?"

    def _channels_from(self, groups: list[str]) -> tuple[ChannelReading, ...]:
        if len(groups) != 3:
            raise ValueError(groups)
        values = [parse_number(x) for x in groups[0].split(",")]
        if len(values) != 4:
            raise ValueError(values)
        return (self._reading([*values, parse_number(groups[1]), parse_number(groups[2])]),)
