"""What an analysis takes: the recorded sources, what the workload did, and the thresholds.

Plain data, shared by :mod:`.analysis` (which computes a result from them) and :mod:`.figures`
(which turns its parts into the result's figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from infergy.core.clock import OffsetEstimate
from infergy.core.profile import DEFAULT_GAP_FACTOR
from infergy.core.trace import MULTI_STREAM_SAMPLES_PER_QUERY, QueryLog, Scenario, Trace, Window


@dataclass(frozen=True)
class SourceInput:
    """One power source as recorded.

    Attributes:
        name: stable source name (``gpu0``, ``ac``, ``cpu``, ``sim``...).
        kind: ``nvml | analyzer | rapl | sim | replay``.
        trace: samples on the source's own clock.
        offset: clock offset to apply (host = source - offset), if known.
        idle_w: idle baseline in watts, if measured or given.
        update_period_ns: measured update period (a counter's), for the edge uncertainty.
        simulated: the readings are not measurements (an emulator, a simulated GPU, a
            recording that says so); the result's ``simulated`` flag of the source.
    """

    name: str
    kind: str
    trace: Trace
    offset: OffsetEstimate | None = None
    idle_w: float | None = None
    update_period_ns: int | None = None
    simulated: bool = False


@dataclass(frozen=True)
class Workload:
    """What the measured run did.

    Attributes:
        scenario: the LoadGen scenario.
        queries: every query, when recorded (enables per-query energy and our own latencies).
        query_count: queries in the run (LoadGen's ``result_query_count`` without a query log).
        sample_count: samples in the run.
        latency_ns: p50/p90/p99 latency in ns when known without a query log (LoadGen's).
    """

    scenario: Scenario
    queries: QueryLog | None = None
    query_count: int | None = None
    sample_count: int | None = None
    latency_ns: Mapping[str, float] | None = None

    @classmethod
    def of_queries(cls, scenario: Scenario, queries: QueryLog) -> Workload:
        """A workload described by its full query log."""
        return cls(scenario, queries, len(queries), queries.total_samples)

    @classmethod
    def of_counts(
        cls,
        scenario: Scenario,
        query_count: int,
        latency_ns: Mapping[str, float] | None = None,
        sample_count: int | None = None,
    ) -> Workload:
        """A workload known only by LoadGen's counts (MultiStream queries carry 8 samples)."""
        if sample_count is None:
            per = MULTI_STREAM_SAMPLES_PER_QUERY if scenario is Scenario.MULTI_STREAM else 1
            sample_count = query_count * per
        return cls(scenario, None, query_count, sample_count, latency_ns)


@dataclass(frozen=True)
class AnalysisOptions:
    """Thresholds of the analysis (from the config's ``[analysis]`` section)."""

    gap_factor: float = DEFAULT_GAP_FACTOR
    degraded_coverage: float = 0.95
    align_auto: bool = False
    align_max_lag_s: float = 5.0
    idle_window: Window | None = None
    """Where to measure idle power of sources given no ``idle_w`` (on the host clock)."""
