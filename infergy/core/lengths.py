"""Token length distributions of the synthetic prompts and outputs, drawn from a fixed seed.

A distribution is written as text (``--input-tokens``, ``--output-tokens``, the job's
``input_tokens`` / ``output_tokens``):

- ``128``: every sample has 128 tokens;
- ``64:512``: uniform over the integers 64 to 512 (both included);
- ``normal:256:64``: normal with mean 256 and standard deviation 64, rounded, and clipped to
  [1, mean + 4 standard deviations] (so the longest value is known before anything runs).

Outputs are at least :data:`MIN_OUTPUT_TOKENS` long: LoadGen's time per output token is
``(latency - TTFT) / (n_tokens - 1)``, undefined (it logs garbage) for one token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from infergy.errors import InputError

MIN_OUTPUT_TOKENS = 2
"""LoadGen's TPOT needs two tokens or more per sample."""
MAX_TOKENS = 1 << 20
"""No length above this is accepted (a typo, not a prompt)."""
NORMAL_SPAN_SIGMAS = 4.0
"""A normal distribution is clipped this many standard deviations above its mean."""


@dataclass(frozen=True)
class LengthDist:
    """A distribution of token counts (see the module docstring for the text form).

    Attributes:
        kind: ``fixed``, ``uniform`` or ``normal``.
        low: the smallest value (fixed: the value).
        high: the largest value.
        mean: the mean before rounding and clipping (normal), else the distribution's mean.
        std: the standard deviation (normal), else 0.
    """

    kind: str
    low: int
    high: int
    mean: float
    std: float = 0.0

    @classmethod
    def parse(cls, text: str, *, name: str = "length", minimum: int = 1) -> LengthDist:
        """Read the text form; values below ``minimum`` are refused.

        Raises:
            InputError: not one of the forms, or a value out of range (the message names it).
        """
        spec = str(text).strip().lower()
        hint = "e.g. 128, 64:512 or normal:256:64"
        try:
            if spec.startswith("normal:"):
                mean_s, std_s = spec.removeprefix("normal:").split(":")
                mean, std = float(mean_s), float(std_s)
                if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
                    raise ValueError
                high = math.floor(mean + NORMAL_SPAN_SIGMAS * std)
                dist = cls("normal", max(minimum, 1), high, mean, std)
            elif ":" in spec:
                lo_s, hi_s = spec.split(":")
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo:
                    msg = f"{name} {text!r}: the range {lo}:{hi} is empty"
                    raise InputError(msg, hint=hint)
                dist = cls("uniform", lo, hi, (lo + hi) / 2)
            else:
                value = int(spec)
                dist = cls("fixed", value, value, float(value))
        except ValueError:
            msg = f"{name} {text!r} is not a length distribution"
            raise InputError(msg, hint=hint) from None
        if dist.low < minimum or dist.high > MAX_TOKENS or dist.high < minimum:
            msg = f"{name} {text!r}: lengths must be {minimum} to {MAX_TOKENS} tokens"
            raise InputError(msg, hint=hint)
        return dist

    def sample(self, n: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """``n`` lengths drawn with ``rng``."""
        if self.kind == "fixed":
            return np.full(n, self.low, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high, size=n, endpoint=True).astype(np.int64)
        drawn = np.rint(rng.normal(self.mean, self.std, size=n))
        return np.clip(drawn, self.low, self.high).astype(np.int64)

    def describe(self) -> str:
        """The text form."""
        if self.kind == "fixed":
            return str(self.low)
        if self.kind == "uniform":
            return f"{self.low}:{self.high}"
        return f"normal:{self.mean:g}:{self.std:g}"


@dataclass(frozen=True, eq=False)
class PromptSet:
    """The synthetic samples of a run: each one's prompt and output length in tokens."""

    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.input_tokens.size)

    def sample(self, index: int) -> tuple[int, int]:
        """(prompt tokens, output tokens) of sample ``index`` (taken modulo the set)."""
        i = index % len(self)
        return int(self.input_tokens[i]), int(self.output_tokens[i])


def prompt_set(count: int, inputs: LengthDist, outputs: LengthDist, seed: int) -> PromptSet:
    """``count`` samples drawn from the two distributions with ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    return PromptSet(inputs.sample(count, rng), outputs.sample(count, rng))
