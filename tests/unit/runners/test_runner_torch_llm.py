"""The PyTorch decoder (``--workload llm --backend torch``) on the CPU, tiny shape, fp32.

What the generative SUT relies on: padding in a batched prefill is masked (a prompt batched
with longer ones yields the token it yields alone), the KV cache is right (a sequence decoded
beside others, whose rows are compacted as they finish, yields the tokens it yields alone),
slots are reused once their sequence finished, and the provenance is stable. Skipped without
torch (an optional extra).
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from infergy.core.lengths import LengthDist
from infergy.core.llm import SHAPES
from infergy.runners.backends.gen_base import GenerationSpec, GenerativeBackend
from infergy.runners.backends.torch_llm import TorchGenerator


def _gen(max_batch: int = 4, seed: int = 3) -> TorchGenerator:
    spec = GenerationSpec(
        SHAPES["tiny"], "fp32", max_batch=max_batch, workers=1,
        inputs=LengthDist.parse("8:40", name="input tokens"),
        outputs=LengthDist.parse("4:24", name="output tokens"), seed=seed,
    )  # fmt: skip
    g = TorchGenerator(spec, None)
    g.load()
    return g


def _alone(prompt: int, steps: int) -> list[int]:
    """The tokens of one sequence run by itself: its first, then one per decode step."""
    g = _gen()
    g.prefill([0], [prompt])
    out = g.next_tokens([0])
    for k in range(1, steps + 1):
        g.decode([0], [prompt + k])
        out += g.next_tokens([0])
    g.close()
    return out


def test_it_is_a_generative_backend_with_stable_provenance() -> None:
    a, b = _gen(), _gen()
    assert isinstance(a, GenerativeBackend)
    da, db = a.describe(), b.describe()
    assert da["model_sha256"] == db["model_sha256"] and da["device"] == "cpu"
    assert da["precision"] == "fp32" and not da["cuda_graphs"] and da["llm"]["name"] == "tiny"
    assert _gen(seed=4).describe()["model_sha256"] != da["model_sha256"]
    assert a.limits().details["cache_tokens"] == 256  # 40 + 24 tokens, rounded up


def test_a_short_prompt_batched_with_longer_ones_yields_its_own_first_token() -> None:
    g = _gen()
    g.prefill([0, 1, 2], [37, 9, 21])  # padded to 37: the 9-token prompt must not see it
    batched = g.next_tokens([0, 1, 2])
    alone = [_alone(n, 0)[0] for n in (37, 9, 21)]
    assert batched == alone, f"batched prefill {batched} != each alone {alone}"


def test_decoding_beside_finishing_sequences_matches_the_sequence_alone() -> None:
    """Slot 2's row moves when slots 0 and 1 finish; its tokens must not change."""
    g = _gen()
    g.prefill([0, 1, 2], [12, 30, 17])
    seen = g.next_tokens([2])
    ctx = {0: 12, 1: 30, 2: 17}
    for step in range(1, 9):
        live = [0, 1, 2] if step <= 2 else [1, 2] if step <= 4 else [2]
        if step == 6:  # a new sequence reuses the finished slot 0 and joins the batch
            g.prefill([0], [25])
            ctx[0] = 25
            live = [0, 2]
        for s in live:
            ctx[s] += 1
        g.decode(live, [ctx[s] for s in live])
        seen += g.next_tokens([2])
    alone = _alone(17, 8)
    assert seen == alone, f"slot 2 beside others {seen} != alone {alone}"
    g.close()


def test_a_static_batch_runs_and_close_is_idempotent() -> None:
    g = _gen(max_batch=2)
    g.infer(2)  # prefill two typical prompts, decode them to the end
    g.prefill([0, 1], [10, 11])  # the slots infer used are free again
    g.decode([0, 1], [11, 12])
    g.close()
    g.close()
