"""The core data types: power traces, query logs, windows and scenarios.

Every timestamp is int64 nanoseconds on the SUT's CLOCK_REALTIME (Unix epoch, UTC), per the
time contract in ARCHITECTURE.md. Values are float64 in the unit their semantics imply
(watts for power, joules for a counter). An invalid sample (analyzer error, missed sample,
overrange) is stored as NaN: it is a gap, never a zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from infergy.errors import TraceError

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

NS_PER_S = 1_000_000_000


class Semantics(enum.StrEnum):
    """What a trace's values mean (MEASUREMENT.md, "Traces and their semantics")."""

    INSTANT = "instant"
    """Power in watts at the timestamp; integrated by the trapezoid rule."""
    INTERVAL_MEAN = "interval_mean"
    """Mean power in watts over the interval ending at the timestamp; integrated as steps."""
    COUNTER = "counter"
    """Cumulative energy in joules; may reset (a decrease)."""


class Scenario(enum.StrEnum):
    """MLPerf LoadGen scenarios, spelled as in the result contract."""

    OFFLINE = "offline"
    SERVER = "server"
    SINGLE_STREAM = "single-stream"
    MULTI_STREAM = "multi-stream"

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """Accept contract spellings and LoadGen's (``SingleStream``, ``Offline``...)."""
        key = text.strip().lower().replace("_", "-").replace(" ", "-")
        aliases = {"singlestream": "single-stream", "multistream": "multi-stream"}
        key = aliases.get(key, key)
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            msg = f"unknown scenario {text!r} (choose one of: {choices})"
            raise TraceError(msg) from None

    @property
    def per_query_energy_metric(self) -> bool:
        """True where MLPerf's power metric is energy per query (mJ), not watts."""
        return self in (Scenario.SINGLE_STREAM, Scenario.MULTI_STREAM)


MULTI_STREAM_SAMPLES_PER_QUERY = 8


def _as_i64(name: str, a: npt.ArrayLike) -> I64:
    arr = np.asarray(a)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}"
        raise TraceError(msg)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        msg = f"{name} must hold integer nanoseconds, got dtype {arr.dtype}"
        raise TraceError(msg)
    return arr.astype(np.int64, copy=False)


def _as_f64(name: str, a: npt.ArrayLike) -> F64:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}"
        raise TraceError(msg)
    return arr


@dataclass(frozen=True, eq=False)
class Trace:
    """A power or energy time series from one source.

    Attributes:
        t_ns: sample timestamps, strictly increasing int64 ns (Unix epoch, UTC).
        values: float64 values (W, or J for a counter); NaN marks an invalid sample.
        semantics: how the values are to be integrated.
        nominal_period_ns: the source's update period; sets the first interval of an
            ``interval_mean`` trace and the gap threshold (2x).
        uncertainty: optional per-sample relative uncertainty (a fraction, as PTD reports it).
    """

    t_ns: I64
    values: F64
    semantics: Semantics
    nominal_period_ns: int
    uncertainty: F64 | None = field(default=None)

    def __post_init__(self) -> None:
        t = _as_i64("t_ns", self.t_ns)
        v = _as_f64("values", self.values)
        if t.shape != v.shape:
            msg = f"t_ns has {t.size} samples but values has {v.size}"
            raise TraceError(msg)
        if t.size > 1 and not bool(np.all(np.diff(t) > 0)):
            msg = "trace timestamps must be strictly increasing (use Trace.from_unsorted to clean)"
            raise TraceError(msg)
        if int(self.nominal_period_ns) <= 0:
            msg = f"nominal period must be positive, got {self.nominal_period_ns} ns"
            raise TraceError(msg)
        u = None
        if self.uncertainty is not None:
            u = _as_f64("uncertainty", self.uncertainty)
            if u.shape != v.shape:
                msg = f"uncertainty has {u.size} samples but values has {v.size}"
                raise TraceError(msg)
        object.__setattr__(self, "t_ns", t)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "semantics", Semantics(self.semantics))
        object.__setattr__(self, "nominal_period_ns", int(self.nominal_period_ns))
        object.__setattr__(self, "uncertainty", u)

    @classmethod
    def from_unsorted(
        cls,
        t_ns: npt.ArrayLike,
        values: npt.ArrayLike,
        semantics: Semantics,
        nominal_period_ns: int,
        uncertainty: npt.ArrayLike | None = None,
    ) -> tuple[Trace, int]:
        """Build a trace from samples in any order; repeated timestamps keep the last sample.

        Returns:
            The trace and the number of samples dropped as duplicates.
        """
        t = _as_i64("t_ns", t_ns)
        v = _as_f64("values", values)
        u = None if uncertainty is None else _as_f64("uncertainty", uncertainty)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        u = None if u is None else u[order]
        keep = np.ones(t.size, dtype=bool)
        if t.size > 1:
            keep[:-1] = t[1:] != t[:-1]
        dropped = int(t.size - np.count_nonzero(keep))
        return (
            cls(t[keep], v[keep], semantics, nominal_period_ns, None if u is None else u[keep]),
            dropped,
        )

    def __len__(self) -> int:
        return int(self.t_ns.size)

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """Mask of valid samples (finite values)."""
        return np.isfinite(self.values)

    def shifted(self, offset_ns: int) -> Trace:
        """Return the trace on the host clock, given ``offset = source clock - host clock``."""
        return Trace(
            self.t_ns - np.int64(offset_ns),
            self.values,
            self.semantics,
            self.nominal_period_ns,
            self.uncertainty,
        )

    def between(self, start_ns: int, end_ns: int) -> Trace:
        """Samples with ``start_ns <= t <= end_ns`` (a view-based copy, same semantics)."""
        lo = int(np.searchsorted(self.t_ns, start_ns, side="left"))
        hi = int(np.searchsorted(self.t_ns, end_ns, side="right"))
        u = None if self.uncertainty is None else self.uncertainty[lo:hi]
        t, v = self.t_ns[lo:hi], self.values[lo:hi]
        return Trace(t, v, self.semantics, self.nominal_period_ns, u)


@dataclass(frozen=True, eq=False)
class QueryLog:
    """Every query of a measured run: when it was issued, when it completed, how many samples.

    Attributes:
        issue_ns: issue timestamps, int64 ns (need not be sorted).
        complete_ns: completion timestamps, int64 ns, each >= its issue time.
        samples: samples carried by each query (>= 1).
    """

    issue_ns: I64
    complete_ns: I64
    samples: I64

    def __post_init__(self) -> None:
        i = _as_i64("issue_ns", self.issue_ns)
        c = _as_i64("complete_ns", self.complete_ns)
        s = _as_i64("samples", self.samples)
        if not (i.shape == c.shape == s.shape):
            msg = f"query log columns differ in length ({i.size}, {c.size}, {s.size})"
            raise TraceError(msg)
        if i.size and bool(np.any(c < i)):
            bad = int(np.argmax(c < i))
            msg = f"query {bad} completes before it is issued ({c[bad]} < {i[bad]})"
            raise TraceError(msg)
        if s.size and bool(np.any(s < 1)):
            msg = "every query must carry at least one sample"
            raise TraceError(msg)
        object.__setattr__(self, "issue_ns", i)
        object.__setattr__(self, "complete_ns", c)
        object.__setattr__(self, "samples", s)

    def __len__(self) -> int:
        return int(self.issue_ns.size)

    @property
    def total_samples(self) -> int:
        """Sum of samples over all queries."""
        return int(self.samples.sum())

    @property
    def latency_ns(self) -> I64:
        """Per-query latency (complete - issue)."""
        return self.complete_ns - self.issue_ns


@dataclass(frozen=True)
class Window:
    """A closed time interval [start_ns, end_ns] on the host clock (the measured run)."""

    start_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if int(self.end_ns) <= int(self.start_ns):
            msg = f"empty window: end {self.end_ns} ns is not after start {self.start_ns} ns"
            raise TraceError(msg)
        object.__setattr__(self, "start_ns", int(self.start_ns))
        object.__setattr__(self, "end_ns", int(self.end_ns))

    @property
    def duration_ns(self) -> int:
        """Length of the window in ns."""
        return self.end_ns - self.start_ns

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds."""
        return self.duration_ns / NS_PER_S

    @classmethod
    def of_queries(cls, queries: QueryLog) -> Window:
        """[first issue, last completion]: LoadGen's power_begin/power_end for the run."""
        if len(queries) == 0:
            msg = "the query log is empty: no window can be formed"
            raise TraceError(msg)
        return cls(int(queries.issue_ns.min()), int(queries.complete_ns.max()))
