"""What an analysis takes: the recorded sources, what the workload did, and the thresholds.

Plain data, shared by :mod:`.analysis` (which computes a result from them) and :mod:`.figures`
(which turns its parts into the result's figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from infergy.core.clock import OffsetEstimate
from infergy.core.gen_logs import GenerationLog
from infergy.core.mlperf import LoadgenRun, MlperfRule, mlperf_rule
from infergy.core.profile import DEFAULT_GAP_FACTOR
from infergy.core.trace import (
    F64,
    I64,
    MULTI_STREAM_SAMPLES_PER_QUERY,
    QueryLog,
    Scenario,
    Semantics,
    Trace,
    Window,
)


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
        mlperf_samples: every sample line as MLPerf's checker reads it (timestamps as written,
            repeats and overrange values kept), for its mean; None: the trace's samples.
        samples: for an energy counter, the same device's dense power samples on the same
            clock (NVML's 20-ms buffer): the analysis then anchors them to the counter
            (:mod:`infergy.core.anchored`); None: the counter alone.
        simulated: the readings are not measurements (an emulator, a simulated GPU, a
            recording that says so); the result's ``simulated`` flag of the source.
    """

    name: str
    kind: str
    trace: Trace
    offset: OffsetEstimate | None = None
    idle_w: float | None = None
    update_period_ns: int | None = None
    mlperf_samples: tuple[I64, F64] | None = None
    samples: Trace | None = None
    simulated: bool = False


SAMPLES_SUFFIX = ".samples"
"""A source ``X.samples`` holds the dense power samples of the counter source ``X``."""


def pair_samples(sources: Sequence[SourceInput]) -> list[SourceInput]:
    """Give each counter source ``X`` the trace of source ``X.samples``, when both are there.

    The samples stay a source of their own as well (their figures are reported beside the
    counter's). A source that already carries samples, or is not a counter, is left alone.
    """
    by_name = {s.name: s for s in sources}
    out = []
    for s in sources:
        sibling = by_name.get(s.name + SAMPLES_SUFFIX)
        pairs = (
            s.samples is None
            and sibling is not None
            and s.trace.semantics is Semantics.COUNTER
            and sibling.trace.semantics is not Semantics.COUNTER
        )
        out.append(dataclasses.replace(s, samples=sibling.trace) if pairs and sibling else s)
    return out


@dataclass(frozen=True)
class Workload:
    """What the measured run did.

    Words as MLPerf uses them: a **query** is one LoadGen ``IssueQuery`` (Offline: one per run,
    of every sample; MultiStream: 8 samples; SingleStream and Server: 1), a **sample** one input.
    infergy's query log of an Offline run has one row per **batch** (all issued with the one
    query).

    Attributes:
        scenario: the scenario the result is for (``--scenario``; else LoadGen's).
        queries: every query (Offline: every batch), when recorded (per-query energy).
        query_count: LoadGen queries in the run.
        sample_count: samples in the run.
        latency_ns: p50/p90/p99 latency in ns when known without a query log (LoadGen's).
        loadgen: what LoadGen logged about the run (MLPerf's figures); None without its log.
        generation: a generative run's phase and token logs (the result's ``generative``).
    """

    scenario: Scenario
    queries: QueryLog | None = None
    query_count: int | None = None
    sample_count: int | None = None
    latency_ns: Mapping[str, float] | None = None
    loadgen: LoadgenRun | None = None
    generation: GenerationLog | None = None

    @classmethod
    def of_queries(
        cls,
        scenario: Scenario,
        queries: QueryLog,
        loadgen: LoadgenRun | None = None,
        generation: GenerationLog | None = None,
    ) -> Workload:
        """A workload described by its full query log (Offline: the batches of its queries)."""
        count = len(queries)
        if _run_scenario(scenario, loadgen) is Scenario.OFFLINE and count:
            count = int(np.unique(queries.issue_ns).size)  # a query's batches share its issue
        return cls(scenario, queries, count, queries.total_samples, loadgen=loadgen,
                   generation=generation)  # fmt: skip

    @classmethod
    def of_counts(
        cls,
        scenario: Scenario,
        query_count: int,
        latency_ns: Mapping[str, float] | None = None,
        sample_count: int | None = None,
        loadgen: LoadgenRun | None = None,
    ) -> Workload:
        """A workload known only by LoadGen's counts (MultiStream queries carry 8 samples)."""
        if sample_count is None:
            run = _run_scenario(scenario, loadgen)
            per = MULTI_STREAM_SAMPLES_PER_QUERY if run is Scenario.MULTI_STREAM else 1
            sample_count = query_count * per
        return cls(scenario, None, query_count, sample_count, latency_ns, loadgen)

    @property
    def run_scenario(self) -> Scenario:
        """The scenario LoadGen ran (differs from :attr:`scenario` for an inferred result)."""
        return _run_scenario(self.scenario, self.loadgen)

    @property
    def rule(self) -> MlperfRule:
        """MLPerf's rule for this result."""
        return mlperf_rule(self.scenario, self.loadgen)

    @property
    def batches(self) -> int | None:
        """Offline with a query log: its rows, one per batch."""
        if self.queries is None or self.run_scenario is not Scenario.OFFLINE:
            return None
        return len(self.queries)

    @property
    def energy_queries(self) -> float | None:
        """Queries of :attr:`scenario` for the J/query figures.

        The run's, except for MultiStream inferred from SingleStream, whose queries are 8 of
        the run's (one sample each).
        """
        factor = self.rule.query_factor
        if factor > 1 and self.sample_count:
            return self.sample_count / factor
        return self.query_count

    @property
    def rows_are_queries(self) -> bool:
        """The query log's rows are LoadGen queries (not an Offline run's batches)."""
        return self.run_scenario is not Scenario.OFFLINE


def _run_scenario(scenario: Scenario, loadgen: LoadgenRun | None) -> Scenario:
    return loadgen.scenario if loadgen is not None else scenario


@dataclass(frozen=True)
class AnalysisOptions:
    """Thresholds of the analysis (from the config's ``[analysis]`` section)."""

    gap_factor: float = DEFAULT_GAP_FACTOR
    degraded_coverage: float = 0.95
    align_auto: bool = False
    align_max_lag_s: float = 5.0
    idle_window: Window | None = None
    """Where to measure idle power of sources given no ``idle_w`` (on the host clock)."""
