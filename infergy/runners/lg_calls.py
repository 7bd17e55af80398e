"""How a SUT tells LoadGen about samples: completions, first tokens, token counts.

Shared by the in-process generative SUT (:mod:`infergy.runners.gen_sut`) and the network SUT
(:mod:`infergy.runners.network.sut`). LoadGen's response objects take their fields positionally
(``QuerySampleResponse(id, data, size, n_tokens)``; keywords raise), cannot be pickled, and a
token-latency run needs ``FirstTokenComplete`` for every sample (without it LoadGen logs a TTFT
and TPOT of 0) and ``n_tokens >= 2`` at completion (else its TPOT is negative garbage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Complete = Callable[[Sequence[int]], None]
FirstToken = Callable[[int], None]
CompleteTokens = Callable[[int, int], None]


@dataclass
class LoadgenCalls:
    """How the SUT tells LoadGen about samples (built from the ``mlperf_loadgen`` module)."""

    complete: Complete
    first_token: FirstToken
    complete_tokens: CompleteTokens

    @classmethod
    def of(cls, lg: Any) -> LoadgenCalls:
        """LoadGen's calls with empty responses (performance mode); positional arguments only."""
        response, done, first = (
            lg.QuerySampleResponse,
            lg.QuerySamplesComplete,
            lg.FirstTokenComplete,
        )

        def complete(ids: Sequence[int]) -> None:
            done([response(i, 0, 0) for i in ids])

        def first_token(sample_id: int) -> None:
            first([response(sample_id, 0, 0)])

        def complete_tokens(sample_id: int, n_tokens: int) -> None:
            done([response(sample_id, 0, 0, n_tokens)])

        return cls(complete, first_token, complete_tokens)
