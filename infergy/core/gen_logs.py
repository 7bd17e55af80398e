"""What a generative run records beside its query log: its engine steps and its samples' tokens.

Plain data on the session clock (:class:`GenerationLog`): every prefill or decode step
(:class:`PhaseLog`) and every completed sample's issue, first token, completion and token
counts (:class:`TokenLog`). :mod:`infergy.core.phase_split` splits energy between the phases;
:mod:`infergy.core.generative` turns both into the result's ``generative`` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from infergy.core.trace import F64, I64
from infergy.errors import TraceError

PREFILL, DECODE = 0, 1
PHASE_NAMES = {PREFILL: "prefill", DECODE: "decode"}


def _i64(a: object) -> I64:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class PhaseLog:
    """Every engine step of a run (arrays of one length, any order).

    Attributes:
        start_ns: when the step started (session clock).
        end_ns: when its outputs were complete.
        kind: :data:`PREFILL` or :data:`DECODE`.
        tokens: prompt tokens a prefill processed; tokens a decode step produced.
        batch: sequences in the step.
        slot: the device that ran it (position in the run's devices).
    """

    start_ns: I64
    end_ns: I64
    kind: I64
    tokens: I64
    batch: I64
    slot: I64

    def __post_init__(self) -> None:
        cols = [_i64(getattr(self, k)) for k in ("start_ns", "end_ns", "kind", "tokens",
                                                   "batch", "slot")]  # fmt: skip
        if len({c.size for c in cols}) > 1:
            msg = "phase log columns differ in length"
            raise TraceError(msg)
        if cols[0].size and bool(np.any(cols[1] < cols[0])):
            msg = "a phase ends before it starts"
            raise TraceError(msg)
        for name, col in zip(("start_ns", "end_ns", "kind", "tokens", "batch", "slot"), cols,
                             strict=True):  # fmt: skip
            object.__setattr__(self, name, col)

    def __len__(self) -> int:
        return int(self.start_ns.size)

    @classmethod
    def empty(cls) -> PhaseLog:
        """No phase."""
        z = np.zeros(0, np.int64)
        return cls(z, z, z, z, z, z)

    def of_kind(self, kind: int) -> PhaseLog:
        """The phases of one kind."""
        m = self.kind == kind
        return PhaseLog(self.start_ns[m], self.end_ns[m], self.kind[m], self.tokens[m],
                        self.batch[m], self.slot[m])  # fmt: skip


@dataclass(frozen=True, eq=False)
class TokenLog:
    """Every completed sample of a generative run (arrays of one length).

    Attributes:
        issue_ns: when LoadGen issued it.
        first_ns: when its first token was out (LoadGen's ``FirstTokenComplete``).
        complete_ns: when its last token was out.
        input_tokens: its prompt's tokens.
        output_tokens: the tokens it produced (LoadGen's ``n_tokens``).
        slot: the device that ran it.
    """

    issue_ns: I64
    first_ns: I64
    complete_ns: I64
    input_tokens: I64
    output_tokens: I64
    slot: I64

    def __post_init__(self) -> None:
        names = ("issue_ns", "first_ns", "complete_ns", "input_tokens", "output_tokens", "slot")
        cols = [_i64(getattr(self, k)) for k in names]
        if len({c.size for c in cols}) > 1:
            msg = "token log columns differ in length"
            raise TraceError(msg)
        i, f, c = cols[0], cols[1], cols[2]
        if i.size and bool(np.any((f < i) | (c < f))):
            msg = "a sample's first token is before its issue or after its completion"
            raise TraceError(msg)
        for name, col in zip(names, cols, strict=True):
            object.__setattr__(self, name, col)

    def __len__(self) -> int:
        return int(self.issue_ns.size)

    @classmethod
    def empty(cls) -> TokenLog:
        """No sample."""
        z = np.zeros(0, np.int64)
        return cls(z, z, z, z, z, z)

    @property
    def ttft_ns(self) -> I64:
        """Time to first token of each sample."""
        return self.first_ns - self.issue_ns

    @property
    def tpot_ns(self) -> F64:
        """Time per output token after the first, LoadGen's way: (latency - TTFT) / (n - 1).

        NaN for a sample of fewer than two tokens (undefined).
        """
        n = self.output_tokens.astype(np.float64) - 1.0
        span = (self.complete_ns - self.first_ns).astype(np.float64)
        out = np.full(span.shape, np.nan)
        np.divide(span, n, out=out, where=n > 0)
        return out


@dataclass(frozen=True, eq=False)
class GenerationLog:
    """What a generative run recorded beside its query log.

    Attributes:
        phases: every engine step.
        tokens: every completed sample.
        executors: how many steps can run at once (devices x workers): the timeline's scale.
        lengths: the prompt and output length distributions asked for (text forms).
        model: the model's dimensions (``LlmShape.describe``), for the result.
    """

    phases: PhaseLog
    tokens: TokenLog
    executors: int = 1
    lengths: Mapping[str, str] | None = None
    model: Mapping[str, object] | None = None
