"""Decoder-only transformer shapes (Llama-like) and what they cost: parameters, bytes, FLOPs.

Pure arithmetic, no I/O. A :class:`LlmShape` is the architecture of the generative workload
(``--workload llm``): RMSNorm, rotary positions, grouped-query attention with a KV cache and a
SwiGLU feed-forward, untied embedding and output head (Llama 3's layout). The weights are
random (:mod:`infergy.runners.backends.torch_llm`): power and speed do not depend on them, and
no quality is claimed. The same shapes drive the simulated GPU's prefill and decode times
(:mod:`infergy.core.gpu_llm`) and the memory plan that names the largest batch that fits.

Built-in shapes (:data:`SHAPES`): ``tiny`` (a CPU one, for CI), ``llama-1b-shape`` (Llama
3.2 1B's dimensions) and ``llama-8b-shape`` (Llama 3.1 8B's: 32 layers, 4096 hidden, 32 heads,
8 KV heads, 14336 FFN, vocabulary 128256).
"""

from __future__ import annotations

from dataclasses import dataclass

from infergy.errors import ModelError, WorkloadError

BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "bf16": 2}
"""Bytes per weight / activation / cached value by precision (int8 is not modelled)."""
MAX_PREFILL_TOKENS = 8192
"""One prefill step takes new sequences until their prompts hold this many tokens (at least
one sequence): it bounds the activations a prefill needs, as serving engines do."""
MEMORY_HEADROOM = 0.92
"""Share of the free device memory a plan may use (allocator fragmentation, CUDA graphs)."""
CONTEXT_ROUND_TOKENS = 256
"""The KV cache's length is rounded up to a multiple of this (the attention's length buckets)."""


@dataclass(frozen=True)
class LlmShape:
    """The dimensions of a Llama-like decoder.

    Attributes:
        name: the model name (``llama-8b-shape``).
        layers: transformer blocks.
        hidden: model width.
        heads: attention (query) heads.
        kv_heads: key/value heads (grouped-query attention: ``heads`` is a multiple).
        ffn: the SwiGLU feed-forward's inner width.
        vocab: vocabulary size.
        context_tokens: the longest sequence (prompt + output) it takes.
        rope_theta: the rotary embedding's base.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    context_tokens: int
    rope_theta: float = 500_000.0

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        """Parameters of one block: attention, SwiGLU, two RMSNorm weights."""
        kv = self.kv_heads * self.head_dim
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * kv
        return attention + 3 * self.hidden * self.ffn + 2 * self.hidden

    @property
    def params(self) -> int:
        """All parameters: embedding, blocks, final norm, output head (untied)."""
        return 2 * self.vocab * self.hidden + self.layers * self.layer_params + self.hidden

    def weight_bytes(self, precision: str) -> int:
        """Bytes of the weights at ``precision``."""
        return self.params * _bytes(precision)

    def streamed_weight_bytes(self, precision: str) -> int:
        """Bytes one decode step reads: every block and the output head (not the embedding)."""
        return (self.layers * self.layer_params + self.vocab * self.hidden) * _bytes(precision)

    def kv_bytes_per_token(self, precision: str) -> int:
        """KV cache bytes of one token (keys and values of every layer)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * _bytes(precision)

    def prefill_flops(self, prompt_tokens: list[int] | tuple[int, ...]) -> float:
        """FLOPs of one prefill of these prompts (the output head on each last position)."""
        tokens = sum(prompt_tokens)
        matmul = 2.0 * self.layers * (self.layer_params - 2 * self.hidden) * tokens
        head = 2.0 * self.vocab * self.hidden * len(prompt_tokens)
        attention = 2.0 * self.layers * self.hidden * sum(n * n for n in prompt_tokens)
        return matmul + head + attention

    def decode_flops(self, context_tokens: list[int] | tuple[int, ...]) -> float:
        """FLOPs of one decode step of these sequences (one new token each)."""
        b = len(context_tokens)
        matmul = 2.0 * (
            self.layers * (self.layer_params - 2 * self.hidden) + self.vocab * self.hidden
        )
        attention = 4.0 * self.layers * self.hidden * sum(context_tokens)
        return matmul * b + attention

    def decode_bytes(self, context_tokens: list[int] | tuple[int, ...], precision: str) -> float:
        """Bytes one decode step moves: the weights once, every sequence's KV cache."""
        kv = self.kv_bytes_per_token(precision) * sum(context_tokens)
        return float(self.streamed_weight_bytes(precision) + kv)

    def describe(self) -> dict[str, object]:
        """The dimensions as JSON (a result's provenance)."""
        return {
            "name": self.name, "layers": self.layers, "hidden": self.hidden,
            "heads": self.heads, "kv_heads": self.kv_heads, "ffn": self.ffn,
            "vocab": self.vocab, "context_tokens": self.context_tokens, "params": self.params,
            "weights": "random (no quality claims)",
        }  # fmt: skip


def _bytes(precision: str) -> int:
    try:
        return BYTES_PER_VALUE[precision]
    except KeyError:
        msg = f"the llm workload runs fp32, fp16 or bf16, not {precision}"
        raise WorkloadError(msg, hint="use --precision bf16") from None


SHAPES: dict[str, LlmShape] = {
    s.name: s
    for s in (
        LlmShape("tiny", layers=2, hidden=64, heads=4, kv_heads=2, ffn=172, vocab=512,
                 context_tokens=2048, rope_theta=10_000.0),
        LlmShape("llama-1b-shape", layers=16, hidden=2048, heads=32, kv_heads=8, ffn=8192,
                 vocab=128_256, context_tokens=8192),
        LlmShape("llama-8b-shape", layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14_336,
                 vocab=128_256, context_tokens=8192),
    )
}  # fmt: skip
"""The built-in shapes by name."""
DEFAULT_SHAPE = "llama-8b-shape"
"""The shape a GPU runs (and the simulated GPU models) when none is named."""


def shape_named(name: str) -> LlmShape:
    """The built-in shape called ``name``.

    Raises:
        ModelError: no such shape (the message lists them).
    """
    try:
        return SHAPES[name]
    except KeyError:
        msg = f"no built-in language model {name!r}"
        raise ModelError(msg, hint=f"use --model {' | '.join(SHAPES)}") from None


def cache_tokens(longest_tokens: int) -> int:
    """The KV cache length for sequences of at most ``longest_tokens`` (rounded up)."""
    return -(-max(1, longest_tokens) // CONTEXT_ROUND_TOKENS) * CONTEXT_ROUND_TOKENS


def check_context(shape: LlmShape, *, longest_input: int, longest_output: int) -> None:
    """Refuse lengths the model's context cannot hold.

    Raises:
        WorkloadError: the longest prompt plus the longest output is beyond the context.
    """
    total = longest_input + longest_output
    if total > shape.context_tokens:
        msg = (
            f"prompts of up to {longest_input} tokens plus outputs of up to {longest_output} "
            f"need {total} tokens of context; {shape.name} holds {shape.context_tokens}"
        )
        hint = "shorten --input-tokens / --output-tokens (their largest values)"
        raise WorkloadError(msg, hint=hint)


@dataclass(frozen=True)
class MemoryPlan:
    """What a batch of sequences needs on the device, in bytes."""

    weights_bytes: int
    kv_cache_bytes: int
    workspace_bytes: int

    @property
    def total_bytes(self) -> int:
        """Everything together."""
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes


def memory_plan(
    shape: LlmShape, precision: str, *, batch: int, longest_tokens: int, workers: int = 1
) -> MemoryPlan:
    """The device memory of ``batch`` sequences of up to ``longest_tokens`` per worker.

    The workspace covers one prefill step (at most :data:`MAX_PREFILL_TOKENS` tokens, or one
    whole prompt if longer): its activations, attention scores of one head group at a time
    and the fp32 logits of the last positions.
    """
    per = _bytes(precision)
    ctx = cache_tokens(longest_tokens)
    kv = workers * batch * ctx * shape.kv_bytes_per_token(precision)
    tokens = max(min(MAX_PREFILL_TOKENS, batch * longest_tokens), longest_tokens)
    activations = tokens * (6 * shape.hidden + 3 * shape.ffn) * per
    scores = (
        min(batch, MAX_PREFILL_TOKENS // max(1, longest_tokens) + 1) * shape.heads * ctx * ctx * per
    )
    logits = batch * shape.vocab * 4
    workspace = workers * (activations + scores + logits)
    return MemoryPlan(shape.weight_bytes(precision), kv, workspace)


def largest_batch(
    shape: LlmShape,
    precision: str,
    *,
    longest_tokens: int,
    free_bytes: int,
    workers: int = 1,
    upper: int = 1 << 16,
) -> int | None:
    """The largest batch whose :func:`memory_plan` fits in ``free_bytes`` x the headroom.

    Returns None when not even one sequence fits (the weights alone may not).
    """
    budget = MEMORY_HEADROOM * free_bytes

    def fits(b: int) -> bool:
        plan = memory_plan(shape, precision, batch=b, longest_tokens=longest_tokens,
                           workers=workers)  # fmt: skip
        return plan.total_bytes <= budget

    if not fits(1):
        return None
    lo, hi = 1, upper
    if fits(hi):
        return hi
    while hi - lo > 1:  # fits(lo) and not fits(hi): the plan grows with the batch
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
