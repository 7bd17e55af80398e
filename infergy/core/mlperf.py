"""MLPerf's power result, as its submission checker computes it from a LoadGen log.

The rules come from mlcommons/inference ``tools/submission/submission_checker``
(``checks/power_check.py``, ``checks/performance_check.py``, ``constants.py``; research notes in
``notes/mlperf_power_checker.md``). The mean power itself (:func:`infergy.core.energy.
mlperf_mean_watts`) is scenario-free; what the scenario decides is here:

- Offline, Server: the power result is the mean in **Watts**; the efficiency is LoadGen's own
  logged throughput (``result_samples_per_second``; Server ``result_completed_samples_per_sec``,
  ``result_scheduled_samples_per_sec`` before v4.1; tokens/s for token-latency runs) over it.
- SingleStream, MultiStream: the power result is **millijoules per query**,
  ``mean W x (power_end - power_begin) x 1000 / result_query_count``; the efficiency is
  ``samples_per_query x 1000 / mJ`` samples/J (MultiStream queries carry 8 samples).
- Inferred results (the checker allows them for edge systems only): MultiStream from a
  SingleStream run is ``8 x`` the SingleStream mJ (the same energy per sample, for queries of 8
  samples) and ``8 x early_stopping_latency_ms``; Offline from SingleStream is
  ``result_qps_without_loadgen_overhead`` over the mean W, from MultiStream
  ``8000 / mean query latency (ms)`` over it. Other pairs are not MLPerf results.

Every LoadGen key is read at its first occurrence, as the checker does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infergy.core.trace import MULTI_STREAM_SAMPLES_PER_QUERY, Scenario

MLPERF_SCENARIO = {
    Scenario.OFFLINE: "Offline",
    Scenario.SERVER: "Server",
    Scenario.SINGLE_STREAM: "SingleStream",
    Scenario.MULTI_STREAM: "MultiStream",
}
"""The checker's (and LoadGen's) scenario names."""
SUBMISSION_MIN_DURATION_MS = 600_000
"""The checker refuses ``effective_min_duration_ms`` below this ("Test duration less than 600s")."""
INFERABLE = {
    (Scenario.SINGLE_STREAM, Scenario.MULTI_STREAM),
    (Scenario.SINGLE_STREAM, Scenario.OFFLINE),
    (Scenario.MULTI_STREAM, Scenario.OFFLINE),
}
"""(run scenario, submitted scenario) pairs the checker infers (edge systems only)."""
_WATTS = (Scenario.OFFLINE, Scenario.SERVER)
_PERF_UNIT = {
    Scenario.OFFLINE: "Samples/s",
    Scenario.SERVER: "Queries/s",  # the checker's label; the value is samples/s (1 per query)
    Scenario.SINGLE_STREAM: "Latency (ms)",
    Scenario.MULTI_STREAM: "Latency (ms)",
}
_NS_PER_MS = 1e6


RANGING_MAX_DROP_PERCENT = 5.0
"""The Power WG checker fails a testing pass whose mean power is 5 % or more below the ranging
pass's (it may be higher by any amount)."""


def ranging_delta_percent(testing_w: float, ranging_w: float) -> float:
    """``power_checker.py``'s delta: both means rounded to 5 decimals, the change to 2."""
    return round((round(testing_w, 5) / round(ranging_w, 5) - 1) * 100, 2)


def ranging_ok(delta_percent: float) -> bool:
    """The checker's test: ``delta > -5`` (strict)."""
    return delta_percent > -RANGING_MAX_DROP_PERCENT


@dataclass(frozen=True)
class LoadgenRun:
    """What the checker reads from a run's ``mlperf_log_detail.txt``.

    Attributes:
        scenario: ``effective_scenario``: the scenario LoadGen ran.
        values: every key's first value (``result_*``, ``early_stopping_*``, ``effective_*``,
            ``requested_*``, ``generated_*``).
    """

    scenario: Scenario
    values: Mapping[str, object] = field(default_factory=dict)

    def number(self, key: str) -> float | None:
        """``values[key]`` as a float (None: absent or not a number)."""
        v = self.values.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v)

    @property
    def query_count(self) -> int | None:
        """``result_query_count``: queries issued (Offline 1; SingleStream and Server: samples)."""
        n = self.number("result_query_count")
        return None if n is None else int(n)

    @property
    def sample_count(self) -> int | None:
        """Samples issued.

        Offline: ``generated_samples_per_query`` per query (what LoadGen issued, not its
        6-digit rate x the window); MultiStream: ``samples_per_query`` each; else one each.
        """
        q = self.query_count
        if q is None:
            return None
        if self.scenario is Scenario.OFFLINE:
            per = self.number("generated_samples_per_query")
            return None if per is None else int(per) * q
        if self.scenario is Scenario.MULTI_STREAM:
            per = self.number("effective_samples_per_query") or MULTI_STREAM_SAMPLES_PER_QUERY
            return int(per) * q
        return q

    @property
    def validity(self) -> str | None:
        """``result_validity`` (``VALID`` / ``INVALID``), None when not logged."""
        v = self.values.get("result_validity")
        return v.strip().upper() if isinstance(v, str) else None

    @property
    def uses_tokens(self) -> bool:
        """A token-latency (LLM) run: its Offline/Server efficiency is tokens per joule."""
        for key in ("effective_use_token_latencies", "requested_use_token_latencies"):
            if self.values.get(key) is True:
                return True
        return False


@dataclass(frozen=True)
class MlperfRule:
    """How the checker turns one run into a power result for a submitted scenario.

    Attributes:
        submitted: the scenario the result is for.
        run: the scenario LoadGen ran (None: no LoadGen log).
        samples_per_query: samples in one query of the submitted scenario.
        power_unit: ``Watts`` (Offline, Server) or ``millijoules`` (per query).
        performance: the checker's performance result (None: not in the log).
        performance_unit: its unit as the checker labels it.
        performance_field: the LoadGen key(s) it comes from.
        throughput: Offline/Server efficiency numerator (samples/s or tokens/s), LoadGen's own.
        efficiency_unit: ``samples/J`` or ``tokens/J``.
        valid_pair: False when MLPerf does not infer ``submitted`` from ``run``.
        notes: what the result should say about how the rule applied.
    """

    submitted: Scenario
    run: Scenario | None
    samples_per_query: int
    power_unit: str
    performance: float | None = None
    performance_unit: str = ""
    performance_field: str | None = None
    throughput: float | None = None
    efficiency_unit: str = "samples/J"
    valid_pair: bool = True
    notes: tuple[str, ...] = ()

    @property
    def inferred(self) -> bool:
        """The result is inferred from a run of another scenario."""
        return self.run is not None and self.run is not self.submitted

    @property
    def query_factor(self) -> int:
        """MultiStream inferred from SingleStream: 8 of the run's queries make one query."""
        ss_to_ms = (Scenario.SINGLE_STREAM, Scenario.MULTI_STREAM)
        return MULTI_STREAM_SAMPLES_PER_QUERY if (self.run, self.submitted) == ss_to_ms else 1

    def power_metric(
        self, mean_w: float | None, duration_s: float, query_count: int | None
    ) -> float | None:
        """The checker's ``power_metric``: W, or mJ per (submitted-scenario) query."""
        if mean_w is None or not self.valid_pair:
            return None
        if self.power_unit == "Watts":
            return mean_w
        if not query_count:
            return None
        return mean_w * duration_s * self.query_factor * 1000 / query_count

    def efficiency(self, mean_w: float | None, power_metric: float | None) -> float | None:
        """The checker's ``avg_power_efficiency``: samples (or tokens) per joule."""
        if not self.valid_pair:
            return None
        if self.power_unit == "Watts":
            if self.throughput is None or not mean_w:
                return None
            return self.throughput / mean_w
        return self.samples_per_query * 1000 / power_metric if power_metric else None

    def to_json(self) -> dict[str, object]:
        """The result's ``mlperf`` entry (without the per-source figures)."""
        return {
            "scenario": MLPERF_SCENARIO[self.submitted],
            "run_scenario": None if self.run is None else MLPERF_SCENARIO[self.run],
            "inferred": self.inferred,
            "power_unit": self.power_unit,
            "performance": self.performance,
            "performance_unit": self.performance_unit,
            "performance_field": self.performance_field,
            "efficiency_unit": self.efficiency_unit,
        }


def mlperf_rule(submitted: Scenario, run: LoadgenRun | None) -> MlperfRule:
    """The checker's rule for a result in ``submitted`` from ``run`` (None: no LoadGen log)."""
    spq = MULTI_STREAM_SAMPLES_PER_QUERY if submitted is Scenario.MULTI_STREAM else 1
    unit = "Watts" if submitted in _WATTS else "millijoules"
    perf_unit = _PERF_UNIT[submitted]
    if run is None:
        return MlperfRule(submitted, None, spq, unit, performance_unit=perf_unit)
    pair = (run.scenario, submitted)
    if run.scenario is not submitted and pair not in INFERABLE:
        note = (
            f"MLPerf does not infer {MLPERF_SCENARIO[submitted]} from a "
            f"{MLPERF_SCENARIO[run.scenario]} run: no MLPerf power result"
        )
        return MlperfRule(submitted, run.scenario, spq, unit, performance_unit=perf_unit,
                          valid_pair=False, notes=(note,))  # fmt: skip
    perf, fld, throughput, eff_unit = _performance(submitted, run)
    if run.uses_tokens and submitted in _WATTS:
        perf_unit = "Tokens/s"
    notes: tuple[str, ...] = ()
    if run.scenario is not submitted:
        notes = (
            f"{MLPERF_SCENARIO[submitted]} inferred from a {MLPERF_SCENARIO[run.scenario]} run, "
            "as MLPerf's checker does (allowed for edge systems only)",
        )
    return MlperfRule(submitted, run.scenario, spq, unit, perf, perf_unit, fld, throughput,
                      eff_unit, notes=notes)  # fmt: skip


def _performance(
    submitted: Scenario, run: LoadgenRun
) -> tuple[float | None, str | None, float | None, str]:
    """(performance result, its key, Offline/Server throughput, efficiency unit)."""
    if submitted in _WATTS:
        value, key, unit = _throughput(run)
        return value, key, value, unit
    latency, latency_key = _latency_ms(submitted, run)
    return latency, latency_key, None, "samples/J"


def _throughput(run: LoadgenRun) -> tuple[float | None, str, str]:
    """An Offline or Server result's throughput: (value, its key, efficiency unit)."""
    n, sc = run.number, run.scenario
    if sc is Scenario.SINGLE_STREAM:  # inferred Offline
        key = "result_qps_without_loadgen_overhead"
        return n(key), key, "samples/J"
    if sc is Scenario.MULTI_STREAM:  # inferred Offline: 8 samples per mean query latency
        mean_ns = n("result_mean_query_latency_ns")
        sps = MULTI_STREAM_SAMPLES_PER_QUERY * 1000 / (mean_ns / _NS_PER_MS) if mean_ns else None
        return sps, "8000 / result_mean_query_latency_ns (ms)", "samples/J"
    if run.uses_tokens:
        off = sc is Scenario.OFFLINE
        key = "result_tokens_per_second" if off else "result_completed_tokens_per_second"
        return n(key), key, "tokens/J"
    keys = (
        ("result_samples_per_second",)
        if sc is Scenario.OFFLINE
        else ("result_completed_samples_per_sec", "result_scheduled_samples_per_sec")
    )
    key = next((k for k in keys if n(k) is not None), keys[0])
    return n(key), key, "samples/J"


def _latency_ms(submitted: Scenario, run: LoadgenRun) -> tuple[float | None, str | None]:
    """A SingleStream or MultiStream result's latency in ms, and its key."""
    if run.scenario is Scenario.SINGLE_STREAM and submitted is Scenario.MULTI_STREAM:
        factor, prefix = MULTI_STREAM_SAMPLES_PER_QUERY, "8 x "
        keys: tuple[str, ...] = ("early_stopping_latency_ms", "result_99.00_percentile_latency_ns")
    elif run.scenario is Scenario.SINGLE_STREAM:
        factor, prefix = 1, ""
        keys = ("early_stopping_latency_ss", "result_90.00_percentile_latency_ns")
    else:
        factor, prefix = 1, ""
        keys = ("early_stopping_latency_ms", "result_99.00_percentile_per_query_latency_ns")
    for key in keys:
        if (v := run.number(key)) is not None:
            return factor * v / _NS_PER_MS, prefix + key
    return None, None
