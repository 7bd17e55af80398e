"""A Llama-like decoder in plain PyTorch: RMSNorm, rotary positions, GQA with a KV cache, SwiGLU.

Random weights from a seed (no downloads; power and speed do not depend on the weights, and no
quality is claimed), made directly on the device in the run's precision. Importable without
torch: :class:`TorchDecoder` takes the ``torch`` module it runs on.

The KV cache of one executor is ``rows x kv_heads x cache_tokens x head_dim`` per layer, keys
and values. A prefill writes new sequences' prompts into their rows (right-padded to the
longest; the padding is masked until decode steps overwrite it) and returns their first
tokens (greedy). A decode step works on the first ``b`` rows (the backend keeps the running
sequences there, :mod:`.torch_llm`): it reads each row's last token and position from static
buffers, writes the new key and value at that position, attends over the first ``c`` cached
positions (masked past each row's own), and writes the next token back into the buffer, so a
captured CUDA graph of a ``(b, c)`` step replays with no host work but filling the buffers.
Grouped-query attention is computed per KV head group (queries reshaped, keys never
repeated), so a decode step reads the cache once.
"""

from __future__ import annotations

import math
from typing import Any

from infergy.core.llm import LlmShape

INIT_STD = 0.02
NORM_EPS = 1e-5


class TorchDecoder:
    """The decoder's weights and its prefill and decode computations (see the module).

    Args:
        torch: the ``torch`` module.
        shape: the dimensions.
        dtype: the weights' and activations' dtype.
        device: where everything lives.
        seed: the weights' and the prompt tokens' seed.
        cache_tokens: the longest sequence (rotary tables and prompt tokens are made for it).
    """

    def __init__(
        self, torch: Any, shape: LlmShape, *, dtype: Any, device: Any, seed: int, cache_tokens: int
    ) -> None:
        self.torch, self.shape, self.dtype, self.device = torch, shape, dtype, device
        gen = torch.Generator(device=device).manual_seed(seed)
        h, hd = shape.hidden, shape.head_dim
        qkv = (shape.heads + 2 * shape.kv_heads) * hd

        def weight(*size: int) -> Any:
            return torch.empty(size, dtype=dtype, device=device).normal_(
                0.0, INIT_STD, generator=gen
            )

        def ones(n: int) -> Any:
            return torch.ones(n, dtype=dtype, device=device)

        self.embed = weight(shape.vocab, h)
        self.layers = [
            {
                "attn_norm": ones(h), "wqkv": weight(qkv, h), "wo": weight(h, shape.heads * hd),
                "ffn_norm": ones(h), "w13": weight(2 * shape.ffn, h), "w2": weight(h, shape.ffn),
            }
            for _ in range(shape.layers)
        ]  # fmt: skip
        self.norm = ones(h)
        self.lm_head = weight(shape.vocab, h)
        inv = 1.0 / (shape.rope_theta ** (torch.arange(0, hd, 2, device=device).float() / hd))
        angles = torch.outer(torch.arange(cache_tokens, device=device).float(), inv)
        self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)
        self.prompt_ids = torch.randint(0, shape.vocab, (cache_tokens,), generator=gen,
                                        device=device)  # fmt: skip
        self.scale = 1.0 / math.sqrt(hd)

    # -- pieces -------------------------------------------------------------------------------

    def _rms(self, x: Any, w: Any) -> Any:
        xf = x.float()
        return (xf * self.torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + NORM_EPS)).to(x.dtype) * w

    def _rope(self, x: Any, cos: Any, sin: Any) -> Any:
        """Rotate the two halves of each head (cos/sin broadcast over the heads)."""
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return self.torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def _ffn(self, x: Any, layer: dict[str, Any]) -> Any:
        f = self.torch.nn.functional
        gate, up = f.linear(self._rms(x, layer["ffn_norm"]), layer["w13"]).chunk(2, dim=-1)
        return x + f.linear(f.silu(gate) * up, layer["w2"])

    def _logits_argmax(self, x: Any) -> Any:
        f = self.torch.nn.functional
        return f.linear(self._rms(x, self.norm), self.lm_head).argmax(dim=-1)

    def new_cache(self, rows: int, cache_tokens: int) -> tuple[list[Any], list[Any]]:
        """Empty key and value caches of ``rows`` sequences (one tensor per layer each)."""
        s, t = self.shape, self.torch
        size = (rows, s.kv_heads, cache_tokens, s.head_dim)
        keys = [t.zeros(size, dtype=self.dtype, device=self.device) for _ in range(s.layers)]
        values = [t.zeros(size, dtype=self.dtype, device=self.device) for _ in range(s.layers)]
        return keys, values

    # -- prefill ------------------------------------------------------------------------------

    def prefill(
        self, cache: tuple[list[Any], list[Any]], rows: Any, lengths: Any, longest: int
    ) -> Any:
        """Prompts of ``lengths`` into cache ``rows`` (device tensors); their first tokens."""
        t, s = self.torch, self.shape
        f = t.nn.functional
        n, hd, group = int(rows.shape[0]), s.head_dim, s.heads // s.kv_heads
        ids = self.prompt_ids[:longest].expand(n, longest)
        x = f.embedding(ids, self.embed)
        cos, sin = self.cos[:longest][None, None], self.sin[:longest][None, None]
        keys, values = cache
        for i, layer in enumerate(self.layers):
            qkv = f.linear(self._rms(x, layer["attn_norm"]), layer["wqkv"])
            q, k, v = qkv.split([s.heads * hd, s.kv_heads * hd, s.kv_heads * hd], dim=-1)
            q = self._rope(q.view(n, longest, s.heads, hd).transpose(1, 2), cos, sin)
            k = self._rope(k.view(n, longest, s.kv_heads, hd).transpose(1, 2), cos, sin)
            v = v.view(n, longest, s.kv_heads, hd).transpose(1, 2)
            keys[i][rows, :, :longest] = k
            values[i][rows, :, :longest] = v
            out = f.scaled_dot_product_attention(
                q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1),
                is_causal=True,
            )  # fmt: skip
            x = x + f.linear(out.transpose(1, 2).reshape(n, longest, s.heads * hd), layer["wo"])
            x = self._ffn(x, layer)
        last = x[t.arange(n, device=self.device), lengths - 1]
        return self._logits_argmax(last)

    # -- decode -------------------------------------------------------------------------------

    def decode(
        self,
        cache: tuple[list[Any], list[Any]],
        tokens: Any,
        positions: Any,
        rows: Any,
        context: int,
    ) -> None:
        """One token for rows ``[0, b)``: ``tokens[:b]`` in, the next ones written back.

        ``tokens``, ``positions`` and ``rows`` (``arange``) are the first ``b`` entries of the
        executor's static buffers; ``positions`` is where each row's new key goes (its cached
        tokens so far), ``context`` the cached positions attended (>= every position + 1).
        """
        t, s = self.torch, self.shape
        f = t.nn.functional
        b, hd, group = int(tokens.shape[0]), s.head_dim, s.heads // s.kv_heads
        x = f.embedding(tokens, self.embed)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        span = t.arange(context, device=self.device)
        visible = (span[None, :] <= positions[:, None])[:, None, None, :]
        keys, values = cache
        for i, layer in enumerate(self.layers):
            qkv = f.linear(self._rms(x, layer["attn_norm"]), layer["wqkv"])
            q, k, v = qkv.split([s.heads * hd, s.kv_heads * hd, s.kv_heads * hd], dim=-1)
            q = self._rope(q.view(b, s.heads, hd), cos, sin)
            k = self._rope(k.view(b, s.kv_heads, hd), cos, sin)
            keys[i][rows, :, positions] = k
            values[i][rows, :, positions] = v.view(b, s.kv_heads, hd)
            kc, vc = keys[i][:b, :, :context], values[i][:b, :, :context]
            qg = q.view(b, s.kv_heads, group, hd)
            scores = t.matmul(qg, kc.transpose(-1, -2)).float() * self.scale
            probs = t.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
            out = t.matmul(probs.to(self.dtype), vc).reshape(b, s.heads * hd)
            x = x + f.linear(out, layer["wo"])
            x = self._ffn(x, layer)
        tokens.copy_(self._logits_argmax(x))

    def move_row(self, cache: tuple[list[Any], list[Any]], src: int, dst: int, length: int) -> None:
        """Copy row ``src``'s first ``length`` cached positions into row ``dst``."""
        for layer_cache in (*cache[0], *cache[1]):
            layer_cache[dst, :, :length].copy_(layer_cache[src, :, :length])
