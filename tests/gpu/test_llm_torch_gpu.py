"""The torch decoder on a real GPU: bf16, CUDA graphs for the decode step, LoadGen's tokens, OOM.

Skipped cleanly without torch, CUDA or LoadGen. ~1-2 min on an H200 (the 1B shape; the 8B
one only for its memory plan).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

from infergy.core.clock import SessionClock  # noqa: E402
from infergy.core.lengths import LengthDist  # noqa: E402
from infergy.core.llm import SHAPES  # noqa: E402
from infergy.core.trace import Scenario  # noqa: E402
from infergy.errors import DeviceOutOfMemoryError  # noqa: E402
from infergy.runners import RunOutcome, Workload, WorkloadConfig  # noqa: E402
from infergy.runners.backends.gen_base import GenerationSpec  # noqa: E402
from infergy.runners.backends.torch_llm import TorchGenerator  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for torch"),
]


def _spec(shape: str, batch: int, *, graphs: bool = True, out: str = "64") -> GenerationSpec:
    return GenerationSpec(
        SHAPES[shape], "bf16", max_batch=batch, workers=1,
        inputs=LengthDist.parse("128:512", name="input tokens"),
        outputs=LengthDist.parse(out, name="output tokens"), cuda_graphs=graphs,
    )  # fmt: skip


def _run(tmp_path: Path, **kw: object) -> tuple[RunOutcome, dict]:
    base: dict[str, object] = {
        "backend": "torch", "model": "llama-1b-shape", "workload": "llm", "precision": "bf16",
        "gpus": (0,), "duration_s": 5.0, "batch_size": 32, "input_tokens": "128:512",
        "output_tokens": "32:96", "cache_dir": tmp_path / "cache",
    }  # fmt: skip
    base.update(kw)
    cfg = WorkloadConfig(**base)  # type: ignore[arg-type]

    async def go() -> tuple[RunOutcome, dict]:
        wl = await Workload.open(cfg, SessionClock(), tmp_path / "out")
        try:
            await wl.warmup(3.0)
            return await wl.run(), wl.describe()
        finally:
            await wl.aclose()

    return asyncio.run(go())


def test_graph_decode_matches_eager_decode() -> None:
    """The captured (batch, context) buckets replay the same step as the eager code."""
    tokens = {}
    for graphs in (True, False):
        g = TorchGenerator(_spec("llama-1b-shape", 8, graphs=graphs), 0)
        g.load()
        assert g.describe()["cuda_graphs"] is graphs
        g.prefill([0, 1, 2], [200, 130, 411])
        seen = []
        ctx = [200, 130, 411]
        for _ in range(6):
            ctx = [c + 1 for c in ctx]
            g.decode([0, 1, 2], ctx)
            seen.append(g.next_tokens([0, 1, 2]))
        tokens[graphs] = seen
        g.close()
    agree = np.mean(np.array(tokens[True]) == np.array(tokens[False]))
    assert agree >= 0.9, f"graph and eager decode agree on {agree:.0%} of tokens"


def test_offline_bf16_tokens_through_loadgen(tmp_path: Path) -> None:
    out, desc = _run(tmp_path, scenario=Scenario.OFFLINE)
    assert out.validity == "VALID", out.problems
    dev = desc["per_device"][0]
    assert dev["cuda_graphs"] and dev["device_name"] and dev["precision"] == "bf16"
    assert out.mlperf is not None and out.mlperf.uses_tokens
    gen = out.generation
    assert gen is not None and len(gen.tokens) == out.queries.total_samples
    tk = gen.tokens
    assert np.all(tk.issue_ns <= tk.first_ns) and np.all(tk.first_ns < tk.complete_ns)
    assert gen.phases.batch.max() > 8, "continuous batching never filled the batch"


def test_server_token_bounds_are_met_at_a_modest_load(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, scenario=Scenario.SERVER, target_qps=4.0, ttft_ms=2000.0,
                  tpot_ms=200.0)  # fmt: skip
    # A 5-s run at 4 queries/s holds ~20 queries: too few for LoadGen's early-stopping estimate
    # of the 99th percentile (~460 with none over the bound), so LoadGen says INVALID for that
    # alone (seen on the H200, 2026-12-03). Any other reason fails; the bounds are checked here.
    others = [p for p in out.problems if "INVALID" in p and "early stopping not met" not in p]
    assert not others, out.problems
    gen = out.generation
    assert gen is not None and np.percentile(gen.tokens.ttft_ns, 99) < 2e9
    assert np.nanpercentile(gen.tokens.tpot_ns, 99) < 200e6


def test_an_8b_batch_that_does_not_fit_names_the_largest_that_does() -> None:
    before = torch.cuda.memory_allocated(0)
    g = TorchGenerator(_spec("llama-8b-shape", 60_000, out="2048"), 0)
    with pytest.raises(DeviceOutOfMemoryError) as err:
        g.load()
    largest = err.value.largest_batch
    assert largest is not None and 1 <= largest < 60_000
    assert f"--batch-size {largest}" in (err.value.hint or "")
    assert torch.cuda.memory_allocated(0) == before, "a refused load left memory allocated"
