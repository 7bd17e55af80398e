"""Measurement windows: the cheap bookkeeping of begin/end, and the figures a window gives.

:class:`WindowBook` is what :meth:`infergy.Measurement.begin_window` and ``end_window`` touch
on the caller's thread: one lock, one session-clock timestamp, one dict entry. Nothing is
computed there (a server may wrap every request in a window); a :class:`Window` computes its
figures the first time they are read, through the measurement that made it, and keeps them
once they are final.

Names are global to a measurement, so a window begun on one thread may be ended on another
(an asyncio server, a thread pool); windows nest and overlap freely. Misuse is a
:class:`~infergy.errors.WindowError` naming the window: begun while already open, ended twice,
ended without being begun.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from infergy.core.clock import SessionClock
from infergy.core.trace import NS_PER_S
from infergy.errors import WindowError

MAX_ENDED_WINDOWS = 100_000
"""Ended windows a measurement remembers (for ``windows`` and "ended twice" errors); older
ones are forgotten first. A handle returned by ``end_window`` works whatever its age."""


@dataclass(frozen=True)
class SourceEnergy:
    """One power source's figures over one window.

    Attributes:
        source: the source name (``gpu0``, ``gpus``, ``ac``, ``cpu``, ``sim``...).
        kind: ``nvml | analyzer | rapl | sim | replay``.
        simulated: True when the source is not a measurement (SIMULATED).
        energy_j: energy over the window's covered part; None when nothing is covered.
        mean_power_w: energy over the window's full duration; None when nothing is covered.
        duration_s: the window's length.
        coverage: share of the window covered by valid sample intervals (0..1).
        uncertainty_j: the energy's uncertainty (root-sum-square of its parts); None with
            no energy.
        samples: valid samples inside the window.
        idle_w: the idle baseline's mean power, when the measurement took one.
        problems: what is wrong with this source over the window, one line each.
    """

    source: str
    kind: str
    simulated: bool
    energy_j: float | None
    mean_power_w: float | None
    duration_s: float
    coverage: float
    uncertainty_j: float | None
    samples: int
    idle_w: float | None = None
    problems: tuple[str, ...] = ()

    def per_item(self, n: float) -> float | None:
        """Joules per item (query, sample, token...) over ``n`` items; None without energy.

        Raises:
            WindowError: ``n`` is not a positive, finite number.
        """
        _check_count(n)
        return None if self.energy_j is None else self.energy_j / n

    def dynamic_per_item(self, n: float) -> float | None:
        """Joules per item above the idle baseline (None without an idle baseline)."""
        _check_count(n)
        dyn = self.dynamic_energy_j
        return None if dyn is None else dyn / n

    @property
    def dynamic_energy_j(self) -> float | None:
        """Energy above the idle baseline: ``energy_j - idle_w * duration_s``."""
        if self.energy_j is None or self.idle_w is None:
            return None
        return self.energy_j - self.idle_w * self.duration_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``problems`` as a list)."""
        d = asdict(self)
        d["problems"] = list(self.problems)
        return d


def _check_count(n: object) -> None:
    ok = isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) and n > 0
    if not ok:
        msg = f"per_item needs a positive number of items, got {n!r}"
        raise WindowError(msg)


FiguresOf = Callable[["Window"], "tuple[dict[str, SourceEnergy], bool]"]
"""How a window gets its figures: ``(per source, final)``; final figures are kept."""


class Window:
    """One ended window: its name and edges now, its figures when first read.

    Reading :attr:`sources` (or ``window["gpu0"]``) while the measurement runs waits, within
    a bound, until every source has sampled past the window's end; after the measurement
    ended it is immediate.
    """

    __slots__ = ("_figures", "_figures_of", "end_ns", "name", "start_ns")

    def __init__(self, name: str, start_ns: int, end_ns: int, figures_of: FiguresOf) -> None:
        self.name = name
        self.start_ns = start_ns
        """Begin, int64 ns on the session clock (Unix epoch, UTC)."""
        self.end_ns = end_ns
        """End, on the same clock."""
        self._figures_of = figures_of
        self._figures: dict[str, SourceEnergy] | None = None

    @property
    def duration_s(self) -> float:
        """The window's length in seconds."""
        return (self.end_ns - self.start_ns) / NS_PER_S

    @property
    def sources(self) -> Mapping[str, SourceEnergy]:
        """The figures of every source over this window (computed on first read)."""
        if self._figures is not None:
            return self._figures
        figures, final = self._figures_of(self)
        if final:
            self._figures = figures
        return figures

    def __getitem__(self, source: str) -> SourceEnergy:
        figures = self.sources
        if source not in figures:
            known = ", ".join(figures) or "none"
            msg = f"window {self.name!r} has no source {source!r} (it has: {known})"
            raise KeyError(msg)
        return figures[source]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: name, edges, duration and every source's figures."""
        return {
            "name": self.name,
            "start_unix_ns": self.start_ns,
            "end_unix_ns": self.end_ns,
            "duration_s": self.duration_s,
            "power": {name: s.as_dict() for name, s in self.sources.items()},
        }

    def __repr__(self) -> str:
        return f"Window({self.name!r}, {self.duration_s:.6f} s)"


class WindowBook:
    """Open and recently ended windows, shared by every thread of one measurement.

    The hot path takes no lock: each begin or end is one ``time.monotonic_ns()`` and one or
    two dict operations, each atomic under the GIL (and in free-threaded builds); "already
    open" is decided by ``dict.setdefault`` itself. Only forgetting the oldest ended windows
    takes a lock.

    Args:
        clock: the session clock (timestamps are its int64 ns).
        figures_of: computes a window's figures (the measurement).
        max_ended: ended windows remembered (oldest forgotten first).
        on_change: called with the number of open windows after each begin/end (simulated
            devices follow it), or None.
    """

    def __init__(
        self,
        clock: SessionClock,
        figures_of: FiguresOf,
        *,
        max_ended: int = MAX_ENDED_WINDOWS,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._offset_ns = clock.wall0_ns - clock.mono0_ns  # session ns = monotonic ns + this
        self._figures_of = figures_of
        self._max_ended = max(1, max_ended)
        self.on_change = on_change
        """Told the number of open windows after each begin/end (set before windows begin)."""
        self._evict_lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._ended: OrderedDict[str, Window] = OrderedDict()  # oldest first; O(1) popitem
        self.accepting = False
        """Begin/end are refused (with a clear error) while this is False."""

    def begin(self, name: str) -> None:
        """Open ``name`` now (see :meth:`infergy.Measurement.begin_window`)."""
        t_ns = _monotonic_ns() + self._offset_ns
        if type(name) is not str or not name:
            raise WindowError(_bad_name(name))
        if not self.accepting:
            raise WindowError(_not_running(name), hint=_HINT_WITH)
        if self._open.setdefault(name, t_ns) is not t_ns:
            msg = f"window {name!r} is already open (begun twice without an end)"
            raise WindowError(msg, hint="give concurrent windows distinct names")
        if self.on_change is not None:
            self.on_change(len(self._open))

    def end(self, name: str) -> Window:
        """Close ``name`` now and return its :class:`Window`."""
        t_ns = _monotonic_ns() + self._offset_ns
        if type(name) is not str:
            raise WindowError(_bad_name(name))
        start_ns = self._open.pop(name, None)
        if start_ns is None:
            raise WindowError(self._why_not_open(name))
        window = Window(name, start_ns, t_ns if t_ns > start_ns else start_ns + 1, self._figures_of)
        ended = self._ended
        ended.pop(name, None)  # a reused name moves to the end of the order
        ended[name] = window
        if len(ended) > self._max_ended:
            self._forget_oldest()
        if self.on_change is not None:
            self.on_change(len(self._open))
        return window

    def _forget_oldest(self) -> None:
        with self._evict_lock:
            while len(self._ended) > self._max_ended:
                try:
                    self._ended.popitem(last=False)
                except KeyError:  # emptied meanwhile
                    return

    def _why_not_open(self, name: str) -> str:
        if not self.accepting and name not in self._ended:
            return _not_running(name)
        if name in self._ended:
            return f"window {name!r} was already ended (end_window called twice)"
        return f"window {name!r} was never begun (no begin_window({name!r}) before this end)"

    def close(self) -> list[str]:
        """Refuse further begins and ends; returns the names of windows left open."""
        self.accepting = False
        left = list(self._open)
        self._open.clear()
        return left

    def open_names(self) -> list[str]:
        """Windows begun and not yet ended."""
        return list(self._open)

    def ended(self) -> list[Window]:
        """The ended windows remembered, oldest first."""
        with self._evict_lock:
            return list(self._ended.values())

    def __iter__(self) -> Iterator[Window]:
        return iter(self.ended())


_monotonic_ns = time.monotonic_ns
_HINT_WITH = "use it inside `with infergy.Measurement() as m:` (or between start() and close())"


def _bad_name(name: object) -> str:
    return f"a window name is a non-empty string, got {name!r}"


def _not_running(name: str) -> str:
    return f"window {name!r}: the measurement is not running"
