"""The emulator's true power over time: what an emulated analyzer "measures".

A profile is piecewise linear through knots ``(t_s, watts)``, constant before the first knot and
after the last; two knots at the same time make a step. It can be built from a constant, from a
``t_s,watts`` CSV, and changed live (:meth:`WattsProfile.set_from`, used by the control socket).
Its exact integral is the ground truth the tests hold measurements against.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
from collections.abc import Sequence

from infergy.errors import InputError
from infergy.formats.common import read_text_file

MAX_KNOTS = 20_000
"""Beyond this many knots, a live profile forgets what is older than :data:`KEEP_S`."""
KEEP_S = 120.0


class WattsProfile:
    """Power (W) as a function of emulator time (s since the emulator started).

    Not thread-safe by itself: the emulator guards it with its lock.

    Args:
        t_s: knot times, non-decreasing.
        watts: power at each knot (W, >= 0).
    """

    def __init__(self, t_s: Sequence[float], watts: Sequence[float]) -> None:
        if not t_s or len(t_s) != len(watts):
            msg = "a power profile needs at least one (t_s, watts) point"
            raise InputError(msg)
        if any(b < a for a, b in itertools.pairwise(t_s)):
            msg = "power profile times must not go backwards"
            raise InputError(msg)
        if any(not (math.isfinite(w) and w >= 0) for w in watts):
            msg = "power profile watts must be finite and >= 0"
            raise InputError(msg)
        self._t = [float(t) for t in t_s]
        self._w = [float(w) for w in watts]
        self._cum: list[float] = []
        self._recompute()

    @classmethod
    def constant(cls, watts: float) -> WattsProfile:
        """The same power forever."""
        return cls([0.0], [watts])

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> WattsProfile:
        """Read ``t_s,watts`` lines (a header line and ``#`` comments are allowed).

        Raises:
            InputError: unreadable file or a line that is not two numbers.
        """
        t_s: list[float] = []
        watts: list[float] = []
        header_seen = False
        for n, raw in enumerate(read_text_file(path, "power profile").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p.strip() for p in line.split(",")]
            try:
                if len(parts) != 2:
                    raise ValueError(line)
                t, w = float(parts[0]), float(parts[1])
            except ValueError:
                if not t_s and not header_seen:
                    header_seen = True
                    continue
                msg = f"{os.fspath(path)}:{n}: expected t_s,watts, got {raw.strip()!r}"
                raise InputError(msg) from None
            t_s.append(t)
            watts.append(w)
        try:
            return cls(t_s, watts)
        except InputError as err:
            msg = f"{os.fspath(path)}: {err}"
            raise InputError(msg) from None

    def _recompute(self) -> None:
        cum = [0.0]
        for i in range(1, len(self._t)):
            cum.append(cum[-1] + (self._t[i] - self._t[i - 1]) * (self._w[i] + self._w[i - 1]) / 2)
        self._cum = cum

    def watts_at(self, t_s: float) -> float:
        """Power at ``t_s`` (right-continuous at steps)."""
        i = bisect.bisect_right(self._t, t_s) - 1
        if i < 0:
            return self._w[0]
        if i >= len(self._t) - 1:
            return self._w[-1]
        t0, t1 = self._t[i], self._t[i + 1]
        return self._w[i] + (self._w[i + 1] - self._w[i]) * (t_s - t0) / (t1 - t0)

    def _cumulative_j(self, t_s: float) -> float:
        i = bisect.bisect_right(self._t, t_s) - 1
        if i < 0:
            return (t_s - self._t[0]) * self._w[0]
        if i >= len(self._t) - 1:
            return self._cum[-1] + (t_s - self._t[-1]) * self._w[-1]
        return self._cum[i] + (t_s - self._t[i]) * (self._w[i] + self.watts_at(t_s)) / 2

    def energy_j(self, start_s: float, end_s: float) -> float:
        """The exact integral of power over [start_s, end_s] (J)."""
        return self._cumulative_j(end_s) - self._cumulative_j(start_s)

    def mean_w(self, start_s: float, end_s: float) -> float:
        """Mean power over (start_s, end_s] (W); the value at ``end_s`` for an empty interval."""
        if end_s <= start_s:
            return self.watts_at(end_s)
        return self.energy_j(start_s, end_s) / (end_s - start_s)

    def set_from(self, t_s: float, watts: float) -> None:
        """From ``t_s`` on, a constant ``watts`` (a step); the profile before is kept."""
        if not (math.isfinite(watts) and watts >= 0):
            msg = f"watts must be finite and >= 0, got {watts}"
            raise InputError(msg)
        before = self.watts_at(t_s)
        if t_s >= self._t[-1]:  # the live case (a step from now on): append, O(1)
            c = self._cum[-1] + (t_s - self._t[-1]) * (before + self._w[-1]) / 2
            self._t += [t_s, t_s]
            self._w += [before, watts]
            self._cum += [c, c]
            if len(self._t) > MAX_KNOTS:
                self._forget_before(t_s - KEEP_S)
            return
        keep = bisect.bisect_left(self._t, t_s)
        self._t = [*self._t[:keep], t_s, t_s]
        self._w = [*self._w[:keep], before, watts]
        self._recompute()

    def _forget_before(self, t_s: float) -> None:
        """Drop knots older than ``t_s`` (bounded memory for a profile set live for days).

        The cumulative energies of the knots kept stay absolute, so energies between times
        after ``t_s`` are unchanged; nothing reads before it (the instrument looks back at most
        a few update intervals).
        """
        cut = max(0, bisect.bisect_right(self._t, t_s) - 1)
        if cut:
            del self._t[:cut], self._w[:cut], self._cum[:cut]
