"""An emulated Yokogawa analyzer: its state and measurement model, no I/O.

Time is passed in (seconds since the emulator started), so every behaviour is deterministic
and testable without a pty. Commands are interpreted by :mod:`.instrument_scpi` (the WT300
tree, or the WT210's 488.2-mode tree); ``;`` chains commands and query replies are joined
with ``;``.

Measurement model, per update of the configured interval: each element's power is the exact
mean of the :class:`~.watts_profile.WattsProfile` over the interval (times its share and a
Gaussian noise factor); volts are set, current and the other items follow from the power
factor. Ranges follow Yokogawa's autorange rules (IM WT310E-01EN): up when the rms value
exceeds 130 % of the range, down when it is at most 30 % of it and at most 125 % of the next
lower range, each only after ``settle_updates`` updates in that state. A value above 140 % of
its range reads as overrange (``INF``, 9.9E+37 on the WT210) and raises the element's OVR bit.
Fixed ranges never change by themselves.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from infergy.ptd_bridge.analyzers.specs import ModelSpec
from infergy.ptd_bridge.watts_profile import WattsProfile

UP_FRACTION, OVERRANGE_FRACTION, DOWN_FRACTION, DOWN_NEXT_FRACTION = 1.3, 1.4, 0.3, 1.25
OVR_BIT = 6
"""EESR bit of element 1's voltage/current overrange; element e uses bit 6 + 3 (e - 1)."""


class CommandError(Exception):
    """A command the instrument rejects: (code, message) goes to the error queue."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f'{code},"{message}"')
        self.code = code


class Instrument:
    """The emulated instrument (see the module docstring).

    Args:
        spec: the model emulated.
        profile: the true total power over time.
        volts: rms voltage (V).
        pf: power factor in AC mode (1 in DC mode).
        noise: relative standard deviation of each update's power (0: exact means).
        shares: each element's share of the total power (default: equal).
        seed: noise seed.
        rate_s: update interval after power-on and ``*RST``.
        settle_updates: updates an autorange condition must hold before the range moves.
        serial: the serial number in ``*IDN?``.
        encode_sequence: report ``100 + (seq mod 1000) / 10`` W on element 1 instead of the
            profile, so a reader can tell which update each sample came from (loss checks).
    """

    def __init__(
        self,
        spec: ModelSpec,
        profile: WattsProfile,
        *,
        volts: float = 230.0,
        pf: float = 0.95,
        noise: float = 0.0,
        shares: tuple[float, ...] | None = None,
        seed: int = 0,
        rate_s: float = 0.25,
        settle_updates: int = 2,
        serial: str = "C2EMU0001V",
        encode_sequence: bool = False,
    ) -> None:
        self.spec = spec
        self.profile = profile
        self.volts, self.pf, self.noise = volts, pf, noise
        n = spec.elements
        self.shares = shares or tuple(1.0 / n for _ in range(n))
        self._rng = np.random.default_rng(seed)
        self.power_on_rate_s = rate_s
        self.settle_updates = settle_updates
        self.serial = serial
        self.encode_sequence = encode_sequence
        self.wt210 = spec.family == "wt210"
        self.seq = 0
        """Updates since start (never reset, so readers can count losses)."""
        self.last_update_s = 0.0
        self.reset(0.0)

    # -- state ----------------------------------------------------------------------------------

    def reset(self, now_s: float) -> None:
        """Power-on / ``*RST`` state: autorange on, top ranges, default items, no events."""
        spec = self.spec
        self.rate_s = self.power_on_rate_s
        self.anchor_s = now_s  # updates happen at anchor + k * rate
        self.last_update_s = now_s
        self.volts_auto = self.amps_auto = True
        self.vrange = [spec.volt_ranges_v[-1]] * spec.elements
        self.arange = [spec.current_ranges_a[-1]] * spec.elements
        self._settle = [[0, 0, 0, 0] for _ in range(spec.elements)]  # v up, v down, a up, a down
        self.items: list[tuple[str, int]] = [("U", 1), ("I", 1), ("P", 1)]
        self.item_count = 3
        self.wt210_items = {"V", "A", "W"}
        self.dc = False
        self.eesr = 0
        self.filters: dict[int, str] = {}
        self.errors: deque[CommandError] = deque(maxlen=32)
        self.data = [dict.fromkeys(("U", "I", "P", "S", "Q", "LAMB", "PHI", "FU", "FI"), math.nan)
                     for _ in range(spec.elements)]  # fmt: skip
        self.over = [0] * spec.elements  # CRANge bits of each element
        self.last_total_w = math.nan

    def next_update_s(self) -> float:
        """When the next update is due."""
        k = math.floor((self.last_update_s - self.anchor_s) / self.rate_s + 1e-9) + 1
        return self.anchor_s + k * self.rate_s

    def advance(self, now_s: float) -> int:
        """Perform every update due by ``now_s``; return how many happened."""
        done = 0
        while (t := self.next_update_s()) <= now_s + 1e-9:
            self._update(t)
            done += 1
        return done

    # -- measurement ----------------------------------------------------------------------------

    def _update(self, t_s: float) -> None:
        self.seq += 1
        total = self.profile.mean_w(self.last_update_s, t_s)
        if self.noise:
            total *= 1.0 + self.noise * float(self._rng.standard_normal())
        if self.encode_sequence:
            total = 100.0 + (self.seq % 1000) / 10.0
        self.last_update_s = t_s
        self.last_total_w = total
        for e in range(self.spec.elements):
            share = float(e == 0) if self.encode_sequence else self.shares[e]
            self._element_update(e, max(0.0, total * share))
        if self.filters.get(1, "NEV") in {"FALL", "RISE", "BOTH"}:
            self.eesr |= 1

    def _element_update(self, e: int, p_w: float) -> None:
        v = self.volts * (1.0 + 0.1 * self.noise * float(self._rng.standard_normal()))
        pf = 1.0 if self.dc else self.pf
        s = p_w / pf
        i = s / v
        vr, ar = self.vrange[e], self.arange[e]
        v_over, a_over = v > OVERRANGE_FRACTION * vr, i > OVERRANGE_FRACTION * ar
        d = self.data[e]
        d.update(U=v, I=i, P=p_w, S=s, Q=math.sqrt(max(0.0, s * s - p_w * p_w)), LAMB=pf,
                 PHI=math.degrees(math.acos(pf)), FU=0.0 if self.dc else 50.0,
                 FI=0.0 if self.dc else 50.0, URAN=vr, IRAN=ar)  # fmt: skip
        if v_over or a_over:
            for key in ("P", "S", "Q", "LAMB", "PHI"):
                d[key] = math.inf
            d["U" if v_over else "I"] = math.inf
            if v_over and a_over:
                d["I"] = math.inf
            self.eesr |= 1 << (OVR_BIT + 3 * e)
        self.over[e] = (4 if v_over else 0) | (64 if a_over else 0)
        st = self._settle[e]
        if self.volts_auto:
            self.vrange[e] = self._autorange(v, vr, self.spec.volt_ranges_v, st, 0)
        if self.amps_auto:
            self.arange[e] = self._autorange(i, ar, self.spec.current_ranges_a, st, 2)

    def _autorange(
        self, value: float, rng: float, ranges: tuple[float, ...], st: list[int], k: int
    ) -> float:
        idx = ranges.index(rng)
        up = value > UP_FRACTION * rng and idx < len(ranges) - 1
        down = (
            idx > 0
            and value <= DOWN_FRACTION * rng
            and value <= DOWN_NEXT_FRACTION * ranges[idx - 1]
        )
        st[k] = st[k] + 1 if up else 0
        st[k + 1] = st[k + 1] + 1 if down else 0
        if st[k] >= self.settle_updates:
            st[k] = 0
            return next((r for r in ranges if value <= r), ranges[-1])
        if st[k + 1] >= self.settle_updates:
            st[k + 1] = 0
            return ranges[idx - 1]
        return rng
