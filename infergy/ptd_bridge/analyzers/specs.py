"""What the bridge knows about each analyzer model: ranges, update rates, device types.

Each model carries its accuracy specification from :mod:`infergy.core.accuracy` (the tables
and the formula are there, shared with the ``ptd`` meter, which looks them up by the driver
name a PTD server reports).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from infergy.core.accuracy import WT210_ACCURACY, WT300_ACCURACY, Accuracy
from infergy.errors import AnalyzerProtocolError, AnalyzerRangeError, InputError

Family = Literal["wt300", "wt210", "dummy"]


_WT300_VOLTS = (15.0, 30.0, 60.0, 150.0, 300.0, 600.0)  # crest factor 3
_DIRECT_MA = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
_AMPS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
_WT300_RATES_MS = (100, 250, 500, 1000, 2000, 5000, 10000, 20000)
_WT210_RATES_MS = (100, 250, 500, 1000, 2000, 5000)


@dataclass(frozen=True)
class ModelSpec:
    """One analyzer model.

    Attributes:
        key: infergy's name for it (``wt310``, ``wt333e``...).
        idn_model: the model field of its ``*IDN?`` reply.
        family: command dialect (``wt300`` tree, ``wt210`` 488.2 tree, ``dummy``).
        elements: input elements (channels).
        volt_ranges_v: voltage ranges, ascending (V).
        current_ranges_a: current ranges, ascending (A).
        update_intervals_ms: the update rates it accepts.
        accuracy: its accuracy specification.
    """

    key: str
    idn_model: str
    family: Family
    elements: int
    volt_ranges_v: tuple[float, ...]
    current_ranges_a: tuple[float, ...]
    update_intervals_ms: tuple[int, ...]
    accuracy: Accuracy

    def pick_voltage_range(self, volts: float) -> float:
        """The smallest voltage range that holds ``volts`` (as PTDaemon picks from ``SR,V``)."""
        return _pick(self.volt_ranges_v, volts, "voltage", "V", self.idn_model)

    def pick_current_range(self, amps: float) -> float:
        """The smallest current range that holds ``amps``."""
        return _pick(self.current_ranges_a, amps, "current", "A", self.idn_model)


def _pick(ranges: tuple[float, ...], value: float, what: str, unit: str, model: str) -> float:
    if not (math.isfinite(value) and value > 0):
        msg = f"invalid {what} range {value!r}"
        raise AnalyzerRangeError(msg, hint=f"give a positive number of {unit}, or Auto")
    for r in ranges:
        if value <= r * (1 + 1e-9):
            return r
    msg = (
        f"{what} range {value:g} {unit} is above the {model}'s largest range {ranges[-1]:g} {unit}"
    )
    raise AnalyzerRangeError(msg)


MODELS: dict[str, ModelSpec] = {
    m.key: m
    for m in (
        ModelSpec("wt310", "WT310", "wt300", 1, _WT300_VOLTS, _DIRECT_MA + _AMPS,
                  _WT300_RATES_MS, WT300_ACCURACY),
        ModelSpec("wt310e", "WT310E", "wt300", 1, _WT300_VOLTS, _DIRECT_MA + _AMPS,
                  _WT300_RATES_MS, WT300_ACCURACY),
        ModelSpec("wt332e", "WT332E", "wt300", 2, _WT300_VOLTS, _AMPS,
                  _WT300_RATES_MS, WT300_ACCURACY),
        ModelSpec("wt333e", "WT333E", "wt300", 3, _WT300_VOLTS, _AMPS,
                  _WT300_RATES_MS, WT300_ACCURACY),
        ModelSpec("wt333", "WT333", "wt300", 3, _WT300_VOLTS, _AMPS,
                  _WT300_RATES_MS, WT300_ACCURACY),
        ModelSpec("wt210", "760401", "wt210", 1, _WT300_VOLTS, _DIRECT_MA + _AMPS,
                  _WT210_RATES_MS, WT210_ACCURACY),
        ModelSpec("dummy", "Dummy", "dummy", 1, (150.0, 300.0), (0.5, 1.0),
                  tuple(range(10, 60_001, 10)), WT300_ACCURACY),
    )
}  # fmt: skip
"""Models by key. ``760401`` is the WT210's model code: its ``*IDN?`` does not say ``WT210``."""


EMULATOR_IDN_FIELD = "infergy emulator"
"""The field infergy's emulator adds after the four of a Yokogawa ``*IDN?`` reply."""


def is_emulator_idn(idn: str) -> bool:
    """Whether an ``*IDN?`` reply is infergy's emulator's (its last field says so)."""
    return idn.strip().rsplit(",", 1)[-1].strip() == EMULATOR_IDN_FIELD


def model_from_idn(idn: str) -> ModelSpec:
    """The model an ``*IDN?`` reply (``YOKOGAWA,WT310,C2PH13047V,F1.03``) names.

    Raises:
        AnalyzerProtocolError: not a Yokogawa model this bridge drives.
    """
    fields = [f.strip() for f in idn.split(",")]
    model = fields[1].upper() if len(fields) > 1 else ""
    for spec in MODELS.values():
        if spec.idn_model.upper() == model:
            return spec
    if model.startswith("WT310"):  # WT310HC/WT310EH: same tree; their 40 A ranges are not listed
        return MODELS["wt310e" if "E" in model[5:] else "wt310"]
    msg = f"the analyzer identifies as {idn.strip()!r}, not a model this bridge drives"
    raise AnalyzerProtocolError(msg, hint="supported: WT310, WT310E, WT332E, WT333(E), WT210")


@dataclass(frozen=True)
class DeviceType:
    """A PTDaemon device type number and what infergy's bridge makes of it.

    Attributes:
        number: PTDaemon's ``DEVICE_TYPE``.
        family: the driver dialect.
        driver: the first field of ``Identify`` (before any ``E``/``_DC`` suffix).
        multichannel: whether it reports the sum and each channel.
        dc: DC measurement mode.
    """

    number: int
    family: Family
    driver: str
    multichannel: bool = False
    dc: bool = False

    def driver_name(self, idn_model: str) -> str:
        """The ``Identify`` driver name: ``YokogawaWT310E``, ``YokogawaWT330_multichannel``..."""
        name = self.driver
        if self.family == "wt300" and not self.multichannel and idn_model.upper().endswith("E"):
            name += "E"
        if self.multichannel:
            name += "_multichannel"
        return name + ("_DC" if self.dc else "")


DEVICE_TYPES: dict[int, DeviceType] = {
    d.number: d
    for d in (
        DeviceType(0, "dummy", "Dummy"),
        DeviceType(8, "wt210", "YokogawaWT210"),
        DeviceType(49, "wt300", "YokogawaWT310"),
        DeviceType(52, "wt300", "YokogawaWT330"),
        DeviceType(77, "wt300", "YokogawaWT330", multichannel=True),
        DeviceType(508, "wt210", "YokogawaWT210", dc=True),
        DeviceType(549, "wt300", "YokogawaWT310", dc=True),
        DeviceType(586, "wt300", "YokogawaWT330", dc=True),
    )
}
UNSUPPORTED_DEVICE_TYPES = {
    35: "Yokogawa WT500",
    47: "Yokogawa WT1800",
    48: "Yokogawa WT500 multichannel",
    59: "Hioki PW3336",
    61: "Hioki PW3337",
    66: "Yokogawa WT5000",
    1000: "the dummy temperature sensor",
    1005: "a temperature sensor",
}


def device_type(number: int) -> DeviceType:
    """Look a PTDaemon device type up.

    Raises:
        InputError: a type this bridge does not drive (one line, with the supported list).
    """
    if number in DEVICE_TYPES:
        return DEVICE_TYPES[number]
    known = UNSUPPORTED_DEVICE_TYPES.get(number)
    what = f" ({known})" if known else ""
    msg = f"device type {number}{what} is not supported by infergy's PTD bridge"
    hint = "supported: 0 dummy, 8 WT210, 49 WT310/WT310E, 52 WT330 single channel, "
    hint += "77 WT330 multichannel, 508/549/586 their DC modes"
    raise InputError(msg, hint=hint)
