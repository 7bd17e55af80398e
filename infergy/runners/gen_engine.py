"""The engine's generative side: the prompt set, the warm-up's calibration, the SUT, the logs.

Called by :class:`~infergy.runners.engine.Engine` when its workload is ``llm``. The warm-up
measures what LoadGen's settings are sized from, on the same continuous batching the SUT runs
(:func:`~infergy.runners.gen_sut.tight_generation`): samples/s and output tokens/s at the full
batch (Offline, Server), the latency of one sample at a time (SingleStream), and the token
floors a Server's TTFT/TPOT bounds are checked against (one prompt's prefill, one decode step,
alone). Each measured phase records, beside its query log, a token log and a phase log
(``tokens-<phase>.bin``, ``phases-<phase>.bin``) flushed with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infergy.core.lengths import PromptSet, prompt_set
from infergy.core.trace import Scenario
from infergy.runners.backends.gen_base import GenerativeBackend, generation_spec
from infergy.runners.gen_sut import GenSut, attach_activity, tight_generation, token_floor
from infergy.runners.lg_calls import LoadgenCalls
from infergy.runners.lg_settings import Calibration
from infergy.runners.recorder import PHASE_FIELDS, TOKEN_FIELDS, QueryRecorder, RowLog
from infergy.runners.types import WorkloadConfig

PROMPT_SAMPLES = 1024
"""Samples in the synthetic prompt set (LoadGen's QSL size; indices wrap)."""
LOG_FILES = {"tokens": "tokens-{phase}.bin", "phases": "phases-{phase}.bin"}


def prompts_of(cfg: WorkloadConfig) -> PromptSet:
    """The run's synthetic samples (deterministic from the seed)."""
    spec = generation_spec(cfg)
    return prompt_set(PROMPT_SAMPLES, spec.inputs, spec.outputs, cfg.seed)


def attach_logs(rec: QueryRecorder, state_dir: Path | None, phase: str) -> tuple[RowLog, RowLog]:
    """The token and phase logs of one phase, flushed and closed with its query log."""
    paths = [
        None if state_dir is None else state_dir / LOG_FILES[k].format(phase=phase)
        for k in ("tokens", "phases")
    ]
    tokens = RowLog(TOKEN_FIELDS, paths[0])
    phases = RowLog(PHASE_FIELDS, paths[1])
    rec.companions += [tokens, phases]
    return tokens, phases


def generative_warmup(
    cfg: WorkloadConfig,
    backends: Sequence[GenerativeBackend],
    duration_s: float,
    rec: QueryRecorder,
) -> Calibration:
    """Calibrate LoadGen's settings for a generative run (see the module docstring)."""
    prompts = prompts_of(cfg)
    activity = attach_activity(backends, cfg.workers_per_device, rec.status)
    single = cfg.scenario is Scenario.SINGLE_STREAM
    try:
        floor = token_floor(backends[0], prompts)
        st = tight_generation(
            backends[:1] if single else backends, prompts=prompts,
            max_batch=1 if single else cfg.batch_size,
            workers_per_device=1 if single else cfg.workers_per_device,
            duration_s=duration_s, min_samples=3 if single else 1, recorder=rec,
        )  # fmt: skip
    finally:
        activity.idle()
    latency = st.median_latency_ns or floor.ttft_ns
    return Calibration(
        capacity_sps=st.steady_samples_per_s, batch_latency_ns=latency,
        single_latency_ns=latency, multi_latency_ns=latency,
        ttft_floor_ns=floor.ttft_ns, tpot_floor_ns=floor.tpot_ns,
        tokens_per_s=st.steady_tokens_per_s,
    )  # fmt: skip


def generative_sut(
    cfg: WorkloadConfig,
    backends: Sequence[GenerativeBackend],
    lg: Any,
    rec: QueryRecorder,
) -> GenSut:
    """The SUT of one LoadGen test of a generative workload (its logs: ``rec``'s companions)."""
    tokens, phases = rec.companions[-2], rec.companions[-1]
    return GenSut(
        backends, workers_per_device=cfg.workers_per_device, recorder=rec, tokens=tokens,
        phases=phases, calls=LoadgenCalls.of(lg), prompts=prompts_of(cfg),
        max_batch=cfg.batch_size, status=rec.status,
    )  # fmt: skip
