"""The emulated instrument's command interpreter: Yokogawa's SCPI-like trees, no I/O.

Headers are matched in short or long form, any case (``:NUM:NORM:VAL?`` is
``:NUMeric:NORMal:VALue?``); the optional ``[:NORMal]`` node may be left out; numeric suffixes
(``ITEM12``, ``FILTer1``) are kept apart. The WT210 answers its 488.2-mode tree
(``:CONFigure``, ``:MEASure``, ``:SAMPle:RATE``) and rejects the WT300 one, and vice versa.
A rejected command goes to the error queue (``:STATus:ERRor?``) as on the instrument.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable

from infergy.ptd_bridge.analyzers.specs import EMULATOR_IDN_FIELD
from infergy.ptd_bridge.instrument import CommandError, Instrument

_MNEMONICS = (  # the manual's spelling: the short form is in capitals
    "COMMunicate",
    "REMote",
    "HEADer",
    "VERBose",
    "WAIT",
    "NUMeric",
    "NORMal",
    "FORMat",
    "NUMber",
    "ITEM",
    "VALue",
    "RATE",
    "INPut",
    "VOLTage",
    "CURRent",
    "RANGe",
    "AUTO",
    "CRANge",
    "MODE",
    "STATus",
    "ERRor",
    "FILTer",
    "EESR",
    "QMESsage",
    "SYSTem",
    "COMMand",
    "CONFigure",
    "MEASure",
    "SAMPle",
)
_SHORT = {m.upper(): "".join(c for c in m if c.isupper()) for m in _MNEMONICS}
_SHORT.update({v: v for v in list(_SHORT.values())})
_NODE_RE = re.compile(r"([A-Za-z]+)(\d*)")
_FUNCTIONS = {"LAMBDA": "LAMB", "URANGE": "URAN", "IRANGE": "IRAN", "PHI": "PHI"}
_WT210_ITEMS = ("V", "A", "W", "VA", "VAR", "PF", "DEGR", "VHZ", "AHZ", "VPK", "APK")
_WT210_ITEM_FN = {"V": "U", "A": "I", "W": "P", "VA": "S", "VAR": "Q", "PF": "LAMB"}
_WT210_ALIASES = {
    "CONF:VOLT:RANG": "INP:VOLT:RANG",
    "CONF:VOLT:AUTO": "INP:VOLT:AUTO",
    "CONF:CURR:RANG": "INP:CURR:RANG",
    "CONF:CURR:AUTO": "INP:CURR:AUTO",
    "CONF:MODE": "INP:MODE",
    "SAMP:RATE": "RATE",
}


def nr3(value: float, *, wt210: bool = False) -> str:
    """Yokogawa's ASCII number: 5 significant digits, engineering exponent (``206.43E-03``)."""
    if not math.isfinite(value):
        nan = math.isnan(value)
        if wt210:
            return "9.91E+37" if nan else "9.9E+37"
        return "NAN" if nan else "INF"
    if value == 0:
        return "0.0000E+00"
    for _ in range(2):  # a second pass when rounding carries into the next decade
        exp = math.floor(math.log10(abs(value)))
        exp3 = 3 * math.floor(exp / 3)
        digits = 4 - (exp - exp3)
        mant = round(value / 10.0**exp3, digits)
        if abs(mant) < 1000:
            break
        value = mant * 10.0**exp3
    return f"{mant:.{digits}f}E{exp3:+03d}"


def _on(arg: str) -> bool:
    if arg.upper() in {"ON", "1"}:
        return True
    if arg.upper() in {"OFF", "0"}:
        return False
    raise CommandError(224, "Illegal parameter value")


class Interpreter:
    """Executes commands against one :class:`~.instrument.Instrument`'s state.

    The emulator owns one per instrument (the instrument is the state and its physics; this
    is the command language over it).
    """

    def __init__(self, instrument: Instrument) -> None:
        self.ins = instrument

    def execute(self, pending: deque[str], replies: list[str], now_s: float) -> bool:
        """Run queued commands; stop (False) at a ``:COMM:WAIT`` whose event has not occurred.

        Query replies are appended to ``replies``; the caller sends them ``;``-joined with CR LF
        when a message's commands are all done.
        """
        while pending:
            command = pending[0].strip()
            if not command:
                pending.popleft()
                continue
            header, _, arg = command.partition(" ")
            arg = arg.strip()
            try:
                path, suffix, query = self._canonical(header)
                if path == "COMM:WAIT" and not query:
                    if not self.ins.eesr & max(1, int(arg or "1")):
                        return False
                else:
                    reply = self._dispatch(path, suffix, query, arg, now_s)
                    if reply is not None:
                        replies.append(reply)
            except CommandError as err:
                self.ins.errors.append(err)
            except ValueError:
                self.ins.errors.append(CommandError(224, "Illegal parameter value"))
            pending.popleft()
        return True

    def _canonical(self, header: str) -> tuple[str, int, bool]:
        query = header.endswith("?")
        header = header.rstrip("?")
        if header.startswith("*"):
            return header.upper(), 0, query
        nodes, suffix = [], 0
        for node in header.lstrip(":").split(":"):
            m = _NODE_RE.fullmatch(node)
            if m is None:
                raise CommandError(102, "Syntax error")
            word = m.group(1).upper()
            suffix = int(m.group(2)) if m.group(2) else suffix
            short = _SHORT.get(word, word)
            if short != "NORM":  # [:NORMal] is optional
                nodes.append(short)
        path = ":".join(nodes)
        if self.ins.wt210:
            if path.startswith(("NUM", "INP", "RATE")):
                raise CommandError(113, "Undefined header")
            path = _WT210_ALIASES.get(path, path)
        elif path.startswith(("CONF", "MEAS", "SAMP")):
            raise CommandError(113, "Undefined header")
        return path, suffix, query

    def _dispatch(self, path: str, suffix: int, query: bool, arg: str, now_s: float) -> str | None:
        handlers: dict[str, Callable[[], str | None]] = {
            "*IDN": lambda: (
                f"YOKOGAWA,{self.ins.spec.idn_model},{self.ins.serial},F1.04,{EMULATOR_IDN_FIELD}"
            ),
            "*RST": lambda: self.ins.reset(now_s),
            "*CLS": self._clear,
            "*OPC": lambda: "1",
            "COMM:REM": lambda: "1" if query else None,
            "COMM:HEAD": lambda: "0" if query else None,
            "COMM:VERB": lambda: "1" if query else None,
            "STAT:QMES": lambda: None,
            "SYST:COMM:COMM": lambda: None,
            "STAT:ERR": self._pop_error,
            "STAT:EESR": self._read_eesr,
            "STAT:FILT": lambda: self._filter(suffix, arg, query),
            "NUM:FORM": lambda: self._format(arg, query),
            "NUM:NUM": lambda: self._item_count(arg, query),
            "NUM:ITEM": lambda: self._item(suffix, arg, query),
            "NUM:VAL": lambda: self._values(arg),
            "MEAS:VAL": self._wt210_values,
            "RATE": lambda: self._rate(arg, query, now_s),
            "INP:MODE": lambda: self._mode(arg, query),
            "INP:CRAN": lambda: str(self.ins.over[max(1, suffix or int(arg or "1")) - 1]),
            "INP:VOLT:RANG": lambda: self._range("v", arg, query),
            "INP:CURR:RANG": lambda: self._range("a", arg, query),
            "INP:VOLT:AUTO": lambda: self._auto("v", arg, query),
            "INP:CURR:AUTO": lambda: self._auto("a", arg, query),
        }
        if path.startswith("MEAS:ITEM:") and self.ins.wt210:
            name = path.removeprefix("MEAS:ITEM:")
            if name not in _WT210_ITEMS and name not in {"WH", "WHP", "WHM", "AH", "AHP", "AHM",
                                                         "TIME", "MATH"}:  # fmt: skip
                raise CommandError(113, "Undefined header")
            if query:
                return "1" if name in self.ins.wt210_items else "0"
            (self.ins.wt210_items.add if _on(arg) else self.ins.wt210_items.discard)(name)
            return None
        handler = handlers.get(path)
        if handler is None:
            raise CommandError(113, "Undefined header")
        return handler()

    def _clear(self) -> None:
        self.ins.eesr = 0
        self.ins.errors.clear()

    def _pop_error(self) -> str:
        if self.ins.errors:
            err = self.ins.errors.popleft()
            return str(err.args[0])
        return '0,"No error"'

    def _read_eesr(self) -> str:
        value, self.ins.eesr = self.ins.eesr, 0
        return str(value)

    def _filter(self, n: int, arg: str, query: bool) -> str | None:
        if query:
            return self.ins.filters.get(n, "NEV")
        kind = arg.upper()[:4].rstrip("E")  # RISE, FALL, BOTH, NEVer
        if kind not in {"RIS", "FALL", "BOTH", "NEV"}:
            raise CommandError(224, "Illegal parameter value")
        self.ins.filters[n] = {"RIS": "RISE"}.get(kind, kind)
        return None

    def _format(self, arg: str, query: bool) -> str | None:
        if query:
            return "ASC"
        if not "ASCII".startswith(arg.upper()[:3]):
            raise CommandError(241, "Hardware missing (infergy's emulator answers ASCII only)")
        return None

    def _item_count(self, arg: str, query: bool) -> str | None:
        if query:
            return str(self.ins.item_count)
        top = 10 if self.ins.spec.elements == 1 else 255
        n = top if arg.upper() == "ALL" else int(arg)
        if not 1 <= n <= top:
            raise CommandError(222, "Data out of range")
        self.ins.item_count = n
        return None

    def _item(self, x: int, arg: str, query: bool) -> str | None:
        while len(self.ins.items) < x:
            self.ins.items.append(("NONE", 1))
        if query:
            fn, el = self.ins.items[x - 1]
            return fn if fn == "NONE" else f"{fn},{el}"
        parts = [p.strip().upper() for p in arg.split(",")]
        fn = _FUNCTIONS.get(parts[0], parts[0])
        el = int(parts[1]) if len(parts) > 1 else 1
        if fn not in {"U", "I", "P", "S", "Q", "LAMB", "PHI", "FU", "FI", "URAN", "IRAN", "NONE"}:
            raise CommandError(224, "Illegal parameter value")
        if not 1 <= el <= self.ins.spec.elements:
            raise CommandError(222, "Data out of range")
        self.ins.items[x - 1] = (fn, el)
        return None

    def _values(self, arg: str) -> str:
        n = int(arg) if arg else self.ins.item_count
        items = (self.ins.items + [("NONE", 1)] * n)[:n]
        return ",".join(
            nr3(math.nan if fn == "NONE" else self.ins.data[el - 1][fn]) for fn, el in items
        )

    def _wt210_values(self) -> str:
        d = self.ins.data[0]
        names = [n for n in _WT210_ITEMS if n in self.ins.wt210_items]
        return ",".join(nr3(d.get(_WT210_ITEM_FN.get(n, n), math.nan), wt210=True) for n in names)

    def _rate(self, arg: str, query: bool, now_s: float) -> str | None:
        if query:
            return f"{round(self.ins.rate_s * 1000)}MS"
        a = arg.upper().replace(" ", "")
        ms = float(a[:-2]) if a.endswith("MS") else float(a.rstrip("S")) * 1000
        if round(ms) not in self.ins.spec.update_intervals_ms:
            raise CommandError(224, "Illegal parameter value")
        self.ins.rate_s = round(ms) / 1000
        self.ins.anchor_s = self.ins.last_update_s = now_s  # a new measurement cycle starts now
        return None

    def _mode(self, arg: str, query: bool) -> str | None:
        if query:
            return "DC" if self.ins.dc else "RMS"
        if arg.upper() not in {"RMS", "DC", "VMEAN", "VMEA"}:
            raise CommandError(224, "Illegal parameter value")
        self.ins.dc = arg.upper() == "DC"
        return None

    def _range(self, kind: str, arg: str, query: bool) -> str | None:
        values = self.ins.vrange if kind == "v" else self.ins.arange
        if query:
            return nr3(values[0], wt210=self.ins.wt210)
        ranges = self.ins.spec.volt_ranges_v if kind == "v" else self.ins.spec.current_ranges_a
        value = float(arg.upper().rstrip("VA"))
        match = [r for r in ranges if math.isclose(r, value, rel_tol=1e-6)]
        if not match:
            raise CommandError(224, "Illegal parameter value")
        values[:] = [match[0]] * len(values)
        self._auto(kind, "OFF", query=False)
        return None

    def _auto(self, kind: str, arg: str, query: bool) -> str | None:
        if query:
            return "1" if (self.ins.volts_auto if kind == "v" else self.ins.amps_auto) else "0"
        if kind == "v":
            self.ins.volts_auto = _on(arg)
        else:
            self.ins.amps_auto = _on(arg)
        return None
