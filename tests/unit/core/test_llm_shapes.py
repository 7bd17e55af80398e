"""Decoder shapes, the memory plan and the largest batch it allows, length distributions."""

from __future__ import annotations

import pytest

from infergy.core.lengths import LengthDist
from infergy.core.llm import SHAPES, cache_tokens, check_context, largest_batch, memory_plan
from infergy.errors import InputError, WorkloadError

GIB = 2**30


def test_the_8b_shape_has_llama_3_1_8b_parameters_and_kv_bytes() -> None:
    s = SHAPES["llama-8b-shape"]
    assert s.params == pytest.approx(8.03e9, rel=0.01)  # Llama 3.1 8B: 8.03 B parameters
    assert s.kv_bytes_per_token("bf16") == 2 * 32 * 8 * 128 * 2  # 128 KiB a token
    assert s.weight_bytes("bf16") == 2 * s.params


def test_the_largest_batch_fits_and_one_more_does_not() -> None:
    s, free = SHAPES["llama-8b-shape"], 141 * GIB
    b = largest_batch(s, "bf16", longest_tokens=4096, free_bytes=free)
    assert b is not None and b > 1
    fits = memory_plan(s, "bf16", batch=b, longest_tokens=4096).total_bytes
    over = memory_plan(s, "bf16", batch=b + 1, longest_tokens=4096).total_bytes
    assert fits <= 0.92 * free < over
    assert largest_batch(s, "fp32", longest_tokens=4096, free_bytes=20 * GIB) is None  # weights


def test_lengths_beyond_the_context_are_refused_and_the_cache_is_rounded() -> None:
    check_context(SHAPES["tiny"], longest_input=1800, longest_output=248)  # 2048: fits
    with pytest.raises(WorkloadError, match="need 2049 tokens of context; tiny holds 2048"):
        check_context(SHAPES["tiny"], longest_input=1801, longest_output=248)
    assert (cache_tokens(1), cache_tokens(256), cache_tokens(257)) == (256, 256, 512)


@pytest.mark.parametrize(
    ("text", "low", "high"), [("128", 128, 128), ("64:512", 64, 512)]
)  # fmt: skip
def test_length_distributions_parse_their_bounds(text: str, low: int, high: int) -> None:
    d = LengthDist.parse(text, name="input tokens")
    assert (d.low, d.high) == (low, high)


def test_a_length_below_the_minimum_or_unreadable_is_refused() -> None:
    with pytest.raises(InputError):
        LengthDist.parse("1", name="output tokens", minimum=2)
    with pytest.raises(InputError):
        LengthDist.parse("lots", name="input tokens")
