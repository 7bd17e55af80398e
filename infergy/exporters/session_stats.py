"""Session counters and last-session figures for the live exports, from result JSON objects.

A finished session is known to the exporters only by its result (the schema_version 1 object
of ARCHITECTURE.md). :class:`SessionStats` counts sessions by status and queries by scenario,
and keeps the figures of the latest non-failed session per (scenario, model, backend), a
bounded number of them (the least recently updated is forgotten first). Absent figures
(``null``) stay absent: they are never exported as zero.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infergy.core.trace import NS_PER_S, Scenario

logger = logging.getLogger(__name__)

KNOWN_STATUSES = ("ok", "degraded", "failed")
"""Result statuses whose counters exist from the start (so ``increase()`` sees the first one)."""

LATENCY_QUANTILES = {"p50": "0.5", "p90": "0.9", "p99": "0.99"}
"""Result latency keys -> the ``quantile`` label value."""

TOKEN_FIGURES = (
    "joules_per_output_token", "joules_per_output_token_uncertainty",
    "joules_per_prefill_token", "joules_per_decode_token", "tokens_per_second_per_watt",
)  # fmt: skip
"""A generative result's per-source figures (``generative.sources``) the exports carry."""

UNKNOWN = "unknown"
"""Label value for a result field that is null (a label must not be empty)."""


@dataclass(frozen=True)
class SourceFigures:
    """Last-session figures of one power source (None: absent in the result).

    Attributes:
        average_watts: time-weighted mean power over the measured window.
        samples_per_second_per_watt: throughput per watt.
        joules_per_query: energy per LoadGen query (Offline: the whole run's one query).
        joules_per_sample: energy per sample.
        joules_per_output_token: a generative run's energy per output token.
        joules_per_output_token_uncertainty: its uncertainty (the window's, per token).
        joules_per_prefill_token: the prefill phase's energy per prompt token.
        joules_per_decode_token: the decode phase's energy per decode-step token.
        tokens_per_second_per_watt: output tokens/s per watt (tokens per joule).
    """

    average_watts: float | None = None
    samples_per_second_per_watt: float | None = None
    joules_per_query: float | None = None
    joules_per_sample: float | None = None
    joules_per_output_token: float | None = None
    joules_per_output_token_uncertainty: float | None = None
    joules_per_prefill_token: float | None = None
    joules_per_decode_token: float | None = None
    tokens_per_second_per_watt: float | None = None


@dataclass(frozen=True)
class LastSession:
    """The figures of the latest session of one (scenario, model, backend).

    Attributes:
        scenario: ``offline | server | single-stream | multi-stream``.
        model: the model name, or ``unknown``.
        backend: the backend, or ``unknown``.
        timestamp_s: end of the measured window, Unix seconds (None when absent).
        samples_per_second: throughput.
        latency_s: latency quantiles in seconds by ``quantile`` label (``0.5``, ``0.9``...).
        sources: per power source (``gpu0``, ``gpus``, ``ac``...).
        loadgen_valid: 1.0 when LoadGen called the run VALID, 0.0 INVALID, None unknown.
    """

    scenario: str
    model: str
    backend: str
    timestamp_s: float | None = None
    samples_per_second: float | None = None
    latency_s: Mapping[str, float] = field(default_factory=dict)
    sources: Mapping[str, SourceFigures] = field(default_factory=dict)
    loadgen_valid: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(scenario, model, backend): what a newer session replaces."""
        return self.scenario, self.model, self.backend


def _number(value: object) -> float | None:
    """A finite float, or None for null, non-numbers and NaN/inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _label(value: object) -> str:
    return str(value) if isinstance(value, str) and value else UNKNOWN


def last_session_of(result: Mapping[str, Any]) -> LastSession:
    """The last-session figures in one result object (missing parts are simply absent)."""
    performance = _mapping(result.get("performance"))
    latency_ms = _mapping(performance.get("latency_ms"))
    latency_s = {
        q: ms / 1000.0
        for key, q in LATENCY_QUANTILES.items()
        if (ms := _number(latency_ms.get(key))) is not None
    }
    power = _mapping(result.get("power"))
    efficiency = _mapping(result.get("efficiency"))
    tokens = _mapping(_mapping(result.get("generative")).get("sources"))
    sources = {}
    for name in sorted(set(power) | set(efficiency)):
        p, e = _mapping(power.get(name)), _mapping(efficiency.get(name))
        g = _mapping(tokens.get(name))
        sources[str(name)] = SourceFigures(
            average_watts=_number(p.get("average_watts")),
            samples_per_second_per_watt=_number(e.get("samples_per_second_per_watt")),
            joules_per_query=_number(e.get("joules_per_query")),
            joules_per_sample=_number(e.get("joules_per_sample")),
            **{f: _number(g.get(f)) for f in TOKEN_FIGURES},
        )
    end_ns = _number(_mapping(result.get("window")).get("end_unix_ns"))
    validity = _mapping(result.get("loadgen")).get("validity") or _mapping(
        result.get("mlperf")
    ).get("validity")
    return LastSession(
        scenario=_label(result.get("scenario")),
        model=_label(result.get("model")),
        backend=_label(result.get("backend")),
        timestamp_s=None if end_ns is None else end_ns / NS_PER_S,
        samples_per_second=_number(performance.get("samples_per_second")),
        latency_s=latency_s,
        sources=sources,
        loadgen_valid={"VALID": 1.0, "INVALID": 0.0}.get(str(validity)),
    )


class SessionStats:
    """Session counters and the last sessions (not thread-safe: the owner locks).

    Args:
        max_last_sessions: how many (scenario, model, backend) combinations to keep.
    """

    def __init__(self, max_last_sessions: int = 32) -> None:
        self.max_last_sessions = max_last_sessions
        self.running = 0
        self.by_status: Counter[str] = Counter(dict.fromkeys(KNOWN_STATUSES, 0))
        self.queries_by_scenario: Counter[str] = Counter({s.value: 0 for s in Scenario})
        self.samples_by_scenario: Counter[str] = Counter({s.value: 0 for s in Scenario})
        self._last: OrderedDict[tuple[str, str, str], LastSession] = OrderedDict()

    def started(self) -> None:
        """One more session is running."""
        self.running += 1

    def finished(self, result: Mapping[str, Any]) -> None:
        """A session ended with ``result``: count it, and keep its figures unless it failed."""
        self.running = max(0, self.running - 1)
        if result.get("schema_version") != 1:
            logger.warning(
                "result schema_version %r is not 1: counted as failed, figures not exported",
                result.get("schema_version"),
            )
            self.by_status["failed"] += 1
            return
        status = _label(result.get("status"))
        self.by_status[status] += 1
        performance = _mapping(result.get("performance"))
        scenario = _label(result.get("scenario"))
        queries = _number(performance.get("queries"))
        if queries is not None and queries > 0:
            self.queries_by_scenario[scenario] += int(queries)
        samples = _number(performance.get("samples"))
        if samples is not None and samples > 0:
            self.samples_by_scenario[scenario] += int(samples)
        if status != "failed":
            self.remember(result)

    def remember(self, result: Mapping[str, Any]) -> None:
        """Keep a result's figures as the last of its kind, without counting it.

        For the service's start: the latest stored results fill the gauges again.
        """
        last = last_session_of(result)
        self._last.pop(last.key, None)
        self._last[last.key] = last
        while len(self._last) > self.max_last_sessions:
            self._last.popitem(last=False)

    @property
    def last_sessions(self) -> tuple[LastSession, ...]:
        """The kept last sessions, least recently updated first."""
        return tuple(self._last.values())
