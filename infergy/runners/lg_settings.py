"""LoadGen TestSettings from a :class:`WorkloadConfig` and what warmup measured.

LoadGen generates the whole query schedule before the run from the *expected* latency or QPS
(libs.md): if the SUT is faster than expected it runs out of queries and the run is INVALID
("Ran out of generated queries"); if much slower, an Offline run lasts far longer than asked.
So warmup measures the real figures (:class:`Calibration`; for Offline and Server through a
short LoadGen Offline run on the same SUT, see ``Engine.warmup``) and the settings are derived
from them: SingleStream/MultiStream expect 0.8x the measured latency (a few more queries than
needed, never too few), Offline expects the measured capacity (a run at par lasts 1.1x
``min_duration``; an attempt that runs dry or long is re-sized, see
:mod:`infergy.runners.attempts`), Server targets ``target_qps`` (default: half the capacity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from infergy.core.lengths import LengthDist
from infergy.core.trace import MULTI_STREAM_SAMPLES_PER_QUERY, Scenario
from infergy.errors import LoadgenSettingsError
from infergy.runners.gen_config import DEFAULT_TPOT_MS, DEFAULT_TTFT_MS
from infergy.runners.types import WorkloadConfig

LG_SCENARIO = {
    Scenario.OFFLINE: "Offline",
    Scenario.SERVER: "Server",
    Scenario.SINGLE_STREAM: "SingleStream",
    Scenario.MULTI_STREAM: "MultiStream",
}
MAX_GENERATED_SAMPLES = 20_000_000
"""LoadGen holds the schedule in memory (~0.35 kB a query, libs.md): refuse beyond this."""
OFFLINE_QPS_MARGIN = 1.0
"""Offline expects what warmup measured: LoadGen generates 1.1x that for min_duration, so a
run at par lasts 1.1x ``--duration``, the middle of the accepted [1.0, 1.2]x; an attempt off
either way is re-sized from its own throughput (:mod:`infergy.runners.attempts`)."""
SERVER_MAX_LOAD = 1.5
"""A Server target above this multiple of the measured capacity cannot be met."""


@dataclass(frozen=True)
class Calibration:
    """What a short tight loop measured during warmup.

    Attributes:
        capacity_sps: samples/s at the full batch, all devices and workers together.
        batch_latency_ns: median time of one full batch.
        single_latency_ns: median time of one batch-1 call (SingleStream's query).
        multi_latency_ns: median time of one MultiStream query (8 samples).
        loop_capacity_sps: Offline/Server: the tight loop's samples/s when ``capacity_sps``
            came from a LoadGen calibration run (None: the capacity is the loop's).
        ttft_floor_ns: llm: one typical prompt's prefill alone (no TTFT can be shorter).
        tpot_floor_ns: llm: one decode step alone (no TPOT can be shorter).
        tokens_per_s: llm: output tokens/s of the tight generation loop.
    """

    capacity_sps: float
    batch_latency_ns: int
    single_latency_ns: int
    multi_latency_ns: int
    loop_capacity_sps: float | None = None
    ttft_floor_ns: int | None = None
    tpot_floor_ns: int | None = None
    tokens_per_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


def build_settings(
    cfg: WorkloadConfig, cal: Calibration, *, use_hint: bool = True
) -> dict[str, Any]:
    """The TestSettings fields for this run, as plain values (see :func:`apply_settings`).

    ``use_hint=False`` ignores an Offline ``target_qps`` hint (a re-run sized from what the
    previous attempt measured).

    Raises:
        LoadgenSettingsError: a Server target far above the capacity, or a schedule too
            large to hold in memory.
    """
    duration_ms = max(1, round(cfg.duration_s * 1000))
    s: dict[str, Any] = {
        "scenario": LG_SCENARIO[cfg.scenario],
        "min_duration_ms": duration_ms,
        "max_duration_ms": max(3 * duration_ms, duration_ms + 30_000),
        "min_query_count": 1,
        "qsl_rng_seed": cfg.seed,
        "sample_index_rng_seed": cfg.seed,
        "schedule_rng_seed": cfg.seed,
    }
    sc = cfg.scenario
    if sc is Scenario.SINGLE_STREAM:
        expected = max(1_000, int(0.8 * cal.single_latency_ns))
        s["single_stream_expected_latency_ns"] = expected
        generated = 2 * duration_ms * 1_000_000 // expected
    elif sc is Scenario.MULTI_STREAM:
        expected = max(1_000, int(0.8 * cal.multi_latency_ns))
        s["multi_stream_expected_latency_ns"] = expected
        s["multi_stream_samples_per_query"] = MULTI_STREAM_SAMPLES_PER_QUERY
        generated = 2 * duration_ms * 1_000_000 // expected * MULTI_STREAM_SAMPLES_PER_QUERY
    elif sc is Scenario.OFFLINE:
        hinted = (cfg.target_qps or 0.0) if use_hint else 0.0
        qps = max(hinted, OFFLINE_QPS_MARGIN * cal.capacity_sps, 1.0)
        s["offline_expected_qps"] = qps
        generated = int(1.1 * cfg.duration_s * qps)
    else:
        qps = cfg.target_qps or 0.5 * cal.capacity_sps
        if qps > SERVER_MAX_LOAD * cal.capacity_sps:
            msg = (
                f"Server target {qps:,.0f} QPS is {qps / cal.capacity_sps:.1f}x the "
                f"{cal.capacity_sps:,.0f} samples/s this workload reached at warmup"
            )
            hint = f"use --target-qps <= {cal.capacity_sps:,.0f} (or a larger batch / more GPUs)"
            raise LoadgenSettingsError(msg, hint=hint)
        timeout_ns = round(cfg.batching_timeout_ms * 1e6)
        latency_ns = (
            round(cfg.target_latency_ms * 1e6)
            if cfg.target_latency_ms
            else max(15_000_000, 3 * cal.batch_latency_ns + timeout_ns)
        )
        s["server_target_qps"] = qps
        s["server_target_latency_ns"] = latency_ns
        generated = int(cfg.duration_s * qps * 1.1)
    if cfg.backend == "openai" or cfg.generative:  # streamed samples: LoadGen's TTFT and TPOT
        s["use_token_latencies"] = True
    if cfg.generative and sc is Scenario.SERVER:
        s.update(token_targets(cfg, cal))
    _check_generated(cfg, generated)
    return s


def token_targets(cfg: WorkloadConfig, cal: Calibration) -> dict[str, Any]:
    """A generative Server run's TTFT/TPOT bounds (ns); refused when they cannot be met.

    No sample's first token can come before one prompt's prefill alone, and no output token
    faster than one decode step alone (the warm-up measured both): a bound below either makes
    every percentile miss it, and LoadGen would call the run INVALID after all of it.

    Raises:
        LoadgenSettingsError: a bound below what the model does alone, with what it does.
    """
    ttft_ms = cfg.ttft_ms if cfg.ttft_ms is not None else DEFAULT_TTFT_MS
    tpot_ms = cfg.tpot_ms if cfg.tpot_ms is not None else DEFAULT_TPOT_MS
    floors = (("ttft", ttft_ms, cal.ttft_floor_ns, "one typical prompt's prefill"),
              ("tpot", tpot_ms, cal.tpot_floor_ns, "one decode step"))  # fmt: skip
    for name, target_ms, floor_ns, what in floors:
        if floor_ns is not None and target_ms * 1e6 < floor_ns:
            msg = (
                f"a {name.upper()} bound of {target_ms:g} ms cannot be met: {what} alone took "
                f"{floor_ns / 1e6:.3g} ms at warm-up, so LoadGen would call the run INVALID"
            )
            hint = f"use --{name}-ms above {floor_ns / 1e6:.3g} (or a faster GPU / smaller model)"
            raise LoadgenSettingsError(msg, hint=hint)
    longest = LengthDist.parse(cfg.output_tokens, name="output tokens").high
    return {
        "ttft_latency": round(ttft_ms * 1e6),
        "tpot_latency": round(tpot_ms * 1e6),
        # not LoadGen's verdict for token runs: what the longest sample takes at the bounds
        "server_target_latency_ns": round((ttft_ms + tpot_ms * (longest - 1)) * 1e6),
    }


def check_schedule(cfg: WorkloadConfig) -> None:
    """Refuse, before anything runs, a schedule the given figures already make impossible.

    A Server (or a hinted Offline) run of ``target_qps`` for ``duration_s`` has its size known
    without a warm-up; the rest is checked by :func:`build_settings` once warm-up measured.

    Raises:
        LoadgenSettingsError: LoadGen would pre-generate more than it can hold in memory.
    """
    if cfg.target_qps is not None and cfg.scenario in (Scenario.SERVER, Scenario.OFFLINE):
        _check_generated(cfg, int(1.1 * cfg.duration_s * cfg.target_qps))


def _check_generated(cfg: WorkloadConfig, generated: int) -> None:
    if generated > MAX_GENERATED_SAMPLES:
        msg = (
            f"LoadGen would pre-generate ~{generated:,} samples for a {cfg.duration_s:g}-s "
            f"{cfg.scenario.value} run (more than {MAX_GENERATED_SAMPLES:,} to hold in memory)"
        )
        hint = "shorten --duration, lower --target-qps or use a larger batch"
        raise LoadgenSettingsError(msg, hint=hint)


CALIBRATION_OVERGENERATE = 2.5
"""A calibration run generates this many times what the tight loop would do in its time: the
loop is an upper bound, so the run never runs dry before its cut-off."""
CALIBRATION_MAX_SAMPLES = 1_000_000
"""At most this many (~350 MB of LoadGen schedule, ~1 s to abandon): a faster SUT just ends
the calibration run early, which still measures its throughput."""


def calibration_settings(cfg: WorkloadConfig, run_s: float, loop_sps: float) -> dict[str, Any]:
    """TestSettings of the warmup's Offline calibration run (cut off after ``run_s``).

    LoadGen generates ``1.1 x min_duration x offline_expected_qps`` samples; the SUT abandons
    what is left at the deadline, so only the throughput until then matters.
    """
    duration_ms = max(1, round(run_s * 1000))
    samples = min(CALIBRATION_OVERGENERATE * loop_sps * run_s, CALIBRATION_MAX_SAMPLES)
    return {
        "scenario": LG_SCENARIO[Scenario.OFFLINE],
        "min_duration_ms": duration_ms,
        "max_duration_ms": max(3 * duration_ms, duration_ms + 30_000),
        "min_query_count": 1,
        "offline_expected_qps": max(1.0, samples / 1.1 / run_s),
        "qsl_rng_seed": cfg.seed,
        "sample_index_rng_seed": cfg.seed,
        "schedule_rng_seed": cfg.seed,
    }


def steady_capacity(records: npt.NDArray[np.int64], deadline_ns: int) -> float:
    """Samples/s of a calibration run's records over the second half before ``deadline_ns``.

    ``records`` rows are (issue_ns, complete_ns, samples, slot). The first half (LoadGen
    building its query, workers starting, clocks ramping) is left out, as in the tight loop.
    Returns 0.0 when nothing completed by the deadline.
    """
    done = records[records[:, 1] <= deadline_ns]
    if len(done) == 0:
        return 0.0
    start, end = int(records[:, 0].min()), int(done[:, 1].max())
    mid = (start + end) // 2
    late = done[done[:, 1] > mid]
    if len(late) >= 2 and end > mid:
        return float(late[:, 2].sum()) / ((end - mid) / 1e9)
    return float(done[:, 2].sum()) / ((end - start) / 1e9) if end > start else 0.0


def apply_settings(lg: Any, values: dict[str, Any]) -> Any:
    """A ``lg.TestSettings`` in PerformanceOnly mode with ``values`` set."""
    ts = lg.TestSettings()
    ts.mode = lg.TestMode.PerformanceOnly
    for key, value in values.items():
        if key == "scenario":
            ts.scenario = getattr(lg.TestScenario, value)
        else:
            setattr(ts, key, value)
    return ts
