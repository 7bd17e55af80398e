"""The torch decoder (tiny, fp32, CPU) through the real LoadGen with token latencies.

The generative SUT in the runner's child process: LoadGen's Offline and SingleStream tests
with ``use_token_latencies`` on a real PyTorch decoder, every sample's first token reported
(``FirstTokenComplete``) and its token count in the completion; the token and phase logs come
back on the session clock. Skipped without torch (an optional extra). ~30 s on two cores.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

from infergy.core.clock import SessionClock
from infergy.core.gen_logs import DECODE, PREFILL
from infergy.core.trace import Scenario
from infergy.runners import RunOutcome, Workload, WorkloadConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(tmp_path: Path, scenario: Scenario, batch: int) -> tuple[RunOutcome, dict]:
    cfg = WorkloadConfig(
        backend="torch", model="tiny", workload="llm", precision="fp32", batch_size=batch,
        scenario=scenario, duration_s=3.0, gpus=(), input_tokens="8:48",
        output_tokens="4:16", cache_dir=tmp_path / "cache",
    )  # fmt: skip

    async def go() -> tuple[RunOutcome, dict]:
        wl = await Workload.open(cfg, SessionClock(), tmp_path / "out")
        try:
            await wl.warmup(1.5)
            return await wl.run(), wl.describe()
        finally:
            await wl.aclose()

    return asyncio.run(go())


def test_offline_tiny_decoder_reports_token_latencies_to_loadgen(tmp_path: Path) -> None:
    out, desc = _run(tmp_path, Scenario.OFFLINE, batch=8)
    # (not VALID on a loaded two-core machine every time: a 3-s Offline test sized from a
    # 1.5-s warm-up may run out of samples; the token reporting is what is checked here)
    assert out.validity in ("VALID", "INVALID") and out.queries.total_samples, out.problems
    dev = desc["per_device"][0]
    assert dev["backend"] == "torch" and dev["device"] == "cpu" and dev["precision"] == "fp32"
    assert out.mlperf is not None and out.mlperf.uses_tokens, "LoadGen did not count tokens"
    gen = out.generation
    assert gen is not None
    tk, ph = gen.tokens, gen.phases
    assert len(tk) == out.queries.total_samples > 50
    # FirstTokenComplete between issue and completion, on the session clock
    assert np.all(tk.issue_ns <= tk.first_ns) and np.all(tk.first_ns < tk.complete_ns)
    assert np.all((tk.output_tokens >= 4) & (tk.output_tokens <= 16))
    assert np.all((tk.input_tokens >= 8) & (tk.input_tokens <= 48))
    # every produced token is one prefill's first token or one decode step's
    prefill, decode = ph.of_kind(PREFILL), ph.of_kind(DECODE)
    produced = int(prefill.batch.sum() + decode.tokens.sum())
    assert produced >= int(tk.output_tokens.sum())
    assert decode.batch.max() > 1, "continuous batching never ran more than one sequence"
    assert np.all(ph.end_ns >= ph.start_ns)


def test_single_stream_runs_one_sequence_at_a_time(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, Scenario.SINGLE_STREAM, batch=1)
    assert out.validity == "VALID", out.problems
    gen = out.generation
    assert gen is not None and len(gen.tokens) > 10
    tk = gen.tokens
    order = np.argsort(tk.issue_ns)
    assert np.all(tk.issue_ns[order][1:] >= tk.complete_ns[order][:-1])
    assert gen.phases.batch.max() == 1
