"""The one table of live metrics: name, type, help, unit, labels, and how each is read.

Every metric infergy exports is a row of :data:`METRICS` (ARCHITECTURE.md, "Live exports"):
names are literals here and nowhere else, no name is built at run time, and each row's
``read`` maps one :class:`~infergy.exporters.telemetry.Telemetry` snapshot to
``(label values, value)`` pairs. Exporters (:mod:`infergy.exporters.prometheus`) only walk the
table. Conventions: prefix ``infergy_``, base units (watts, joules, hertz, seconds, celsius),
counters end in ``_total``, no run or query id in any label, absent figures are absent series
(never 0).

Labels:

- ``source``: the contract source name (``gpu0``, ``ac``, ``cpu``, ``sim``; the result JSON's
  keys, plus ``gpus`` in last-session figures);
- ``device``: which signal of the source (``counter``, ``mean`` or ``instant`` for its primary
  signal, by semantics; ``samples``, ``avg``, ``dram`` for the meter's secondary ones), so
  ``infergy_power_watts{source="gpu0",device="counter"}`` (the energy counter's rate over the
  last second) sits beside ``{source="gpu0",device="samples"}`` (the 20-ms driver samples'
  mean over the same second). Select one signal per source with
  ``device=~"counter|mean|instant"``;
- ``gpu``: the GPU's source name (``gpu0``), so context joins power on ``source``;
- last-session gauges carry ``scenario``, ``model``, ``backend``, and ``source`` where the
  figure is per power source;
- last-sweep gauges (``infergy_maxq_last_sweep_*``) carry ``objective`` and ``simulated``
  (``true`` on simulated hardware), plus ``bound``, ``settings`` or ``kind``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from infergy.exporters.telemetry import Telemetry

MetricType = Literal["gauge", "counter", "info", "summary"]
Sample = tuple[tuple[str, ...], float]
Reader = Callable[[Telemetry], Iterable[Sample]]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric.

    Attributes:
        name: the exposed name (a counter's ends in ``_total``; an info's in ``_info``).
        type: ``gauge``, ``counter``, ``info`` (value always 1) or ``summary`` (here: only
            ``quantile``-labelled samples of a finished distribution, no count or sum; the
            type is what lets a ``quantile`` label pass ``promtool check metrics``).
        help: one line for people.
        unit: the base unit the name ends with (``watts``...), or ``""``.
        labels: label names, in the order ``read`` yields their values.
        read: the samples of this metric in a snapshot.
    """

    name: str
    type: MetricType
    help: str
    unit: str
    labels: tuple[str, ...]
    read: Reader


# -- readers ------------------------------------------------------------------------------------


def _power(t: Telemetry) -> Iterable[Sample]:
    return (((s.source, s.device), s.power_w) for s in t.sources if s.power_w is not None)


def _energy(t: Telemetry) -> Iterable[Sample]:
    return (((s.source, s.device), s.energy_j) for s in t.sources if s.energy_j is not None)


def _up(t: Telemetry) -> Iterable[Sample]:
    return (((s.source, s.device), float(s.up)) for s in t.sources)


def _errors(t: Telemetry) -> Iterable[Sample]:
    return ((key, float(n)) for key, n in sorted(t.meter_errors.items()))


def _source_info(t: Telemetry) -> Iterable[Sample]:
    return (
        (
            (s.source, s.device, s.meter_source, s.kind, s.semantics, str(s.simulated).lower()),
            1.0,
        )
        for s in t.sources
    )


def _gpu(field: str) -> Reader:
    def read(t: Telemetry) -> Iterable[Sample]:
        for g in t.gpus:
            value = getattr(g, field)
            if value is not None:
                yield (g.gpu,), float(value)

    return read


def _clocks(t: Telemetry) -> Iterable[Sample]:
    for g in t.gpus:
        if g.sm_clock_hz is not None:
            yield (g.gpu, "sm"), g.sm_clock_hz
        if g.memory_clock_hz is not None:
            yield (g.gpu, "memory"), g.memory_clock_hz


def _clock_events(t: Telemetry) -> Iterable[Sample]:
    return (((g.gpu, r), float(on)) for g in t.gpus for r, on in sorted(g.clock_events.items()))


def _running(t: Telemetry) -> Iterable[Sample]:
    return [((), float(t.sessions_running))]


def _sessions(t: Telemetry) -> Iterable[Sample]:
    return (((k,), float(n)) for k, n in sorted(t.sessions_by_status.items()))


def _queries(t: Telemetry) -> Iterable[Sample]:
    return (((k,), float(n)) for k, n in sorted(t.queries_by_scenario.items()))


def _samples(t: Telemetry) -> Iterable[Sample]:
    return (((k,), float(n)) for k, n in sorted(t.samples_by_scenario.items()))


def _last(field: str) -> Reader:
    """A per-session figure (labels scenario, model, backend)."""

    def read(t: Telemetry) -> Iterable[Sample]:
        for s in t.last_sessions:
            value = getattr(s, field)
            if value is not None:
                yield s.key, float(value)

    return read


def _last_by_source(field: str) -> Reader:
    """A per-source figure of the last sessions (labels scenario, model, backend, source)."""

    def read(t: Telemetry) -> Iterable[Sample]:
        for s in t.last_sessions:
            for source, figures in s.sources.items():
                value = getattr(figures, field)
                if value is not None:
                    yield (*s.key, source), float(value)

    return read


def _latency(t: Telemetry) -> Iterable[Sample]:
    return (((*s.key, q), v) for s in t.last_sessions for q, v in s.latency_s.items())


def _sweeps(t: Telemetry) -> Iterable[Sample]:
    return (((k,), float(n)) for k, n in sorted(t.sweeps_by_status.items()))


def _sweep(field: str) -> Reader:
    """A figure of the last sweep (labels objective, simulated)."""

    def read(t: Telemetry) -> Iterable[Sample]:
        s = t.last_sweep
        value = None if s is None else getattr(s, field)
        if s is not None and value is not None:
            yield (s.objective, s.simulated), float(value)

    return read


def _sweep_gain(t: Telemetry) -> Iterable[Sample]:
    s = t.last_sweep
    if s is None:
        return
    for bound, value in (("estimate", s.gain), ("low", s.gain_low), ("high", s.gain_high)):
        if value is not None:
            yield (s.objective, s.simulated, bound), value


def _sweep_objective(t: Telemetry) -> Iterable[Sample]:
    s = t.last_sweep
    if s is None:
        return
    for settings, value in (("default", s.default_value), ("recommended", s.recommended_value)):
        if value is not None:
            yield (s.objective, s.simulated, settings), value


def _sweep_points(t: Telemetry) -> Iterable[Sample]:
    s = t.last_sweep
    if s is None:
        return
    for kind, value in (("measured", s.measurements), ("grid", s.grid_points)):
        if value is not None:
            yield (s.objective, s.simulated, kind), value


def _build(t: Telemetry) -> Iterable[Sample]:
    return [((t.version, t.python_version), 1.0)]


# -- the table ----------------------------------------------------------------------------------

_SD = ("source", "device")
_SESSION = ("scenario", "model", "backend")
_SWEEP = ("objective", "simulated")

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "infergy_power_watts", "gauge",
        "Power of a source over the last ~1 s (a counter's rate; a sampled source's mean).",
        "watts", _SD, _power,
    ),
    MetricSpec(
        "infergy_energy_joules_total", "counter",
        "Energy of a source since the service started (a counter's increase, else integrated "
        "power; gaps not counted).",
        "joules", _SD, _energy,
    ),
    MetricSpec(
        "infergy_source_info", "info",
        "What each power signal is: meter source name, kind, semantics, simulated or not.",
        "", (*_SD, "meter_source", "kind", "semantics", "simulated"), _source_info,
    ),
    MetricSpec(
        "infergy_gpu_power_limit_watts", "gauge", "Enforced GPU power limit.",
        "watts", ("gpu",), _gpu("power_limit_w"),
    ),
    MetricSpec(
        "infergy_gpu_clock_hertz", "gauge", "Current GPU clock, per domain (sm, memory).",
        "hertz", ("gpu", "domain"), _clocks,
    ),
    MetricSpec(
        "infergy_gpu_temperature_celsius", "gauge", "GPU die temperature.",
        "celsius", ("gpu",), _gpu("temperature_c"),
    ),
    MetricSpec(
        "infergy_gpu_clock_event_active", "gauge",
        "1 while a clock-event (throttle) reason is active (sw_power_cap...), else 0.",
        "", ("gpu", "reason"), _clock_events,
    ),
    MetricSpec(
        "infergy_meter_up", "gauge",
        "1 when the meter reports the signal working and its newest sample is fresh.",
        "", _SD, _up,
    ),
    MetricSpec(
        "infergy_meter_errors_total", "counter",
        "Meter errors by kind (not_supported, gpu_lost, timeout, counter_reset...).",
        "", ("source", "kind"), _errors,
    ),
    MetricSpec(
        "infergy_session_running", "gauge", "Measurement sessions in progress.",
        "", (), _running,
    ),
    MetricSpec(
        "infergy_sessions_total", "counter", "Finished measurement sessions by result status.",
        "", ("status",), _sessions,
    ),
    MetricSpec(
        "infergy_queries_total", "counter",
        "LoadGen queries of finished sessions by scenario (Offline: one a session).",
        "", ("scenario",), _queries,
    ),
    MetricSpec(
        "infergy_samples_total", "counter", "Samples of finished sessions by scenario.",
        "", ("scenario",), _samples,
    ),
    MetricSpec(
        "infergy_last_session_samples_per_second", "gauge",
        "Throughput of the last session of this scenario, model and backend.",
        "", _SESSION, _last("samples_per_second"),
    ),
    MetricSpec(
        "infergy_last_session_latency_seconds", "summary",
        "Query latency quantiles of the last session.",
        "seconds", (*_SESSION, "quantile"), _latency,
    ),
    MetricSpec(
        "infergy_last_session_timestamp_seconds", "gauge",
        "End of the last session's measured window, Unix time.",
        "seconds", _SESSION, _last("timestamp_s"),
    ),
    MetricSpec(
        "infergy_last_session_average_watts", "gauge",
        "Time-weighted mean power of a source over the last session's window.",
        "watts", (*_SESSION, "source"), _last_by_source("average_watts"),
    ),
    MetricSpec(
        "infergy_last_session_samples_per_second_per_watt", "gauge",
        "Samples per second per watt of a source in the last session.",
        "", (*_SESSION, "source"), _last_by_source("samples_per_second_per_watt"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_query", "gauge",
        "Energy per LoadGen query of a source in the last session (Offline: its one query).",
        "", (*_SESSION, "source"), _last_by_source("joules_per_query"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_sample", "gauge",
        "Energy per sample of a source in the last session (x1000 for mJ/sample).",
        "", (*_SESSION, "source"), _last_by_source("joules_per_sample"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_output_token", "gauge",
        "A generative session's energy per output token of a source (window energy / tokens).",
        "", (*_SESSION, "source"), _last_by_source("joules_per_output_token"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_output_token_uncertainty", "gauge",
        "The uncertainty of infergy_last_session_joules_per_output_token (the window energy's).",
        "", (*_SESSION, "source"), _last_by_source("joules_per_output_token_uncertainty"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_prefill_token", "gauge",
        "A generative session's prefill energy per prompt token of a source.",
        "", (*_SESSION, "source"), _last_by_source("joules_per_prefill_token"),
    ),
    MetricSpec(
        "infergy_last_session_joules_per_decode_token", "gauge",
        "A generative session's decode energy per generated token of a source.",
        "", (*_SESSION, "source"), _last_by_source("joules_per_decode_token"),
    ),
    MetricSpec(
        "infergy_last_session_tokens_per_second_per_watt", "gauge",
        "A generative session's output tokens per second per watt of a source (tokens/J).",
        "", (*_SESSION, "source"), _last_by_source("tokens_per_second_per_watt"),
    ),
    MetricSpec(
        "infergy_last_session_loadgen_valid", "gauge",
        "1 when LoadGen called the last session's run VALID, 0 when INVALID.",
        "", _SESSION, _last("loadgen_valid"),
    ),
    MetricSpec(
        "infergy_maxq_sweeps_total", "counter", "Finished MaxQ sweeps by record status.",
        "", ("status",), _sweeps,
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_gain_ratio", "gauge",
        "The last sweep's gain over the default settings (0.29: 29 %) and its 95 % interval "
        "(bound estimate, low, high); absent without a recommendation.",
        "ratio", (*_SWEEP, "bound"), _sweep_gain,
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_significant", "gauge",
        "1 when the last sweep's gain interval excludes zero, else 0 (no significant gain).",
        "", _SWEEP, _sweep("significant"),
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_objective", "gauge",
        "The last sweep's objective (samples/J, J/query...) at the default and the "
        "recommended settings.",
        "", (*_SWEEP, "settings"), _sweep_objective,
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_recommended_power_limit_watts", "gauge",
        "The power limit the last sweep recommends (absent if it swept none).",
        "watts", _SWEEP, _sweep("recommended_power_limit_w"),
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_recommended_batch_size", "gauge",
        "The batch size the last sweep recommends (absent if it swept none).",
        "", _SWEEP, _sweep("recommended_batch_size"),
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_points", "gauge",
        "Points the last sweep measured (kind measured, baselines excluded) and its grid's "
        "size (kind grid).",
        "", (*_SWEEP, "kind"), _sweep_points,
    ),
    MetricSpec(
        "infergy_maxq_last_sweep_timestamp_seconds", "gauge",
        "When the last sweep's record was written, Unix time.",
        "seconds", _SWEEP, _sweep("timestamp_s"),
    ),
    MetricSpec(
        "infergy_build_info", "info", "infergy's version and the Python running it.",
        "", ("version", "python_version"), _build,
    ),
)  # fmt: skip
"""Every live metric, in exposition order."""
