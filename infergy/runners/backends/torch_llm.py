"""PyTorch generative backend: a Llama-like decoder on one CUDA device or the CPU.

The model (:mod:`.torch_llm_model`) is built from its dimensions with random weights, fp32,
fp16 or bf16. Each executor (``workers_per_device``) has its own CUDA stream, KV cache of
``max_batch`` rows and static decode buffers. The SUT's slots map to cache rows; before a
decode step the running sequences are compacted into the first rows (a finished sequence's row
is refilled by moving the last one's cache into it, once), so a step of ``n`` sequences works on
rows ``[0, b)``, ``b`` the smallest captured batch >= ``n``, and attends over the smallest
captured context >= the longest one (multiples of 256): with ``cuda_graphs``, one CUDA graph
per (batch, context) bucket and executor, captured at load, replays the whole step. Prefill
runs eagerly (its shapes vary).

Memory is planned before anything is allocated (:func:`infergy.core.llm.memory_plan` against
the device's free memory): a batch that does not fit is a
:class:`~infergy.errors.DeviceOutOfMemoryError` naming the largest that does, as is an
out-of-memory error while loading; nothing is left allocated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from infergy.core.llm import CONTEXT_ROUND_TOKENS, largest_batch, memory_plan
from infergy.errors import DeviceOutOfMemoryError, WorkloadError
from infergy.runners.backends.base import Limits, batch_sizes_for, padded_batch
from infergy.runners.backends.gen_base import GenerationSpec, static_generation
from infergy.runners.backends.torch_backend import import_torch, torch_dtype
from infergy.runners.backends.torch_llm_model import TorchDecoder

MEMORY_HEADROOM = 0.92


class _Executor:
    """One worker's stream, KV cache, slot -> row map and decode buffers (and graphs)."""

    def __init__(self, torch: Any, model: TorchDecoder, spec: GenerationSpec, device: Any) -> None:
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.cache = model.new_cache(spec.max_batch, spec.cache_tokens)
        self.tokens = torch.zeros(spec.max_batch, dtype=torch.long, device=device)
        self.positions = torch.zeros(spec.max_batch, dtype=torch.long, device=device)
        self.rows = torch.arange(spec.max_batch, device=device)
        self.row_of: dict[int, int] = {}
        self.length: dict[int, int] = {}  # cached tokens per slot (for moves)
        self.graphs: dict[tuple[int, int], Any] = {}


class TorchGenerator:
    """The decoder on CUDA device ``gpu`` or the CPU (None); see the module docstring."""

    def __init__(self, spec: GenerationSpec, gpu: int | None) -> None:
        self.spec = spec
        self.gpu = gpu
        self.device = "cpu" if gpu is None else f"gpu{gpu}"
        self._torch: Any = None
        self._dev: Any = None
        self._model: TorchDecoder | None = None
        self._execs: list[_Executor] = []
        self._batches: tuple[int, ...] = ()
        self._contexts: tuple[int, ...] = ()

    # -- load ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Plan the memory, build the weights and caches, capture the decode graphs."""
        torch = self._torch = import_torch()
        spec = self.spec
        if self.gpu is None:
            self._dev = torch.device("cpu")
        else:
            if not torch.cuda.is_available() or self.gpu >= torch.cuda.device_count():
                seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
                msg = f"gpu{self.gpu} is not visible to PyTorch ({seen} CUDA device(s))"
                raise WorkloadError(msg, hint="check --gpus, CUDA_VISIBLE_DEVICES and the driver")
            self._dev = torch.device("cuda", self.gpu)
            self._check_memory()
        dtype = torch_dtype(
            torch, spec.precision, self._dev, runner="the llm workload", hint="use --precision bf16"
        )
        try:
            self._model = TorchDecoder(torch, spec.shape, dtype=dtype, device=self._dev,
                                       seed=spec.seed, cache_tokens=spec.cache_tokens)  # fmt: skip
            self._execs = [_Executor(torch, self._model, spec, self._dev)
                           for _ in range(spec.workers)]  # fmt: skip
            if self._dev.type == "cuda":  # weights and caches were made on the default
                torch.cuda.synchronize(self._dev)  # stream; the executors' streams use them
            graphs = spec.cuda_graphs and self._dev.type == "cuda"
            self._batches = batch_sizes_for(spec.max_batch) if graphs else ()
            step = CONTEXT_ROUND_TOKENS
            self._contexts = tuple(range(step, spec.cache_tokens + 1, step)) if graphs else ()
            for ex in self._execs:
                self._warm(ex)
                if graphs:
                    self._capture(ex)
        except torch.cuda.OutOfMemoryError as err:
            self.close()
            msg = f"out of GPU memory on {self.device} while loading"
            raise self._oom(msg) from err

    def _check_memory(self) -> None:
        torch, spec = self._torch, self.spec
        free, _total = torch.cuda.mem_get_info(self._dev)
        plan = memory_plan(spec.shape, spec.precision, batch=spec.max_batch,
                           longest_tokens=spec.longest_tokens, workers=spec.workers)  # fmt: skip
        if plan.total_bytes > MEMORY_HEADROOM * free:
            msg = (
                f"{spec.shape.name} at batch {spec.max_batch} needs {plan.total_bytes / 2**30:.1f} "
                f"GiB (weights {plan.weights_bytes / 2**30:.1f}, KV cache "
                f"{plan.kv_cache_bytes / 2**30:.1f}); {self.device} has {free / 2**30:.1f} GiB free"
            )
            raise self._oom(msg, free)

    def _oom(self, msg: str, free: int | None = None) -> DeviceOutOfMemoryError:
        spec, torch = self.spec, self._torch
        if free is None:
            free = int(torch.cuda.mem_get_info(self._dev)[0])
        largest = largest_batch(spec.shape, spec.precision, longest_tokens=spec.longest_tokens,
                                free_bytes=free, workers=spec.workers)  # fmt: skip
        largest = None if largest is None else min(largest, max(1, spec.max_batch - 1))
        hint = (
            f"use --batch-size {largest} (the largest that fits)"
            if largest
            else "no batch fits: free the GPU, use a smaller model or shorter sequences"
        )
        return DeviceOutOfMemoryError(msg, hint=hint, largest_batch=largest)

    def _ctx(self, ex: _Executor) -> Any:
        torch = self._torch
        return torch.cuda.stream(ex.stream) if ex.stream is not None else _NullContext()

    def _warm(self, ex: _Executor) -> None:
        """One prefill and decode step at the full batch: lazy init, cuBLAS heuristics."""
        torch, model = self._torch, self._model
        assert model is not None
        n = self.spec.max_batch
        with torch.inference_mode(), self._ctx(ex):
            rows = ex.rows[:n]
            lengths = torch.full((n,), 8, dtype=torch.long, device=self._dev)
            ex.tokens[:n] = model.prefill(ex.cache, rows, lengths, 8)
            ex.positions[:n] = 8
            model.decode(ex.cache, ex.tokens[:n], ex.positions[:n], rows, CONTEXT_ROUND_TOKENS)
        self._sync(ex)

    def _capture(self, ex: _Executor) -> None:
        torch, model, stream = self._torch, self._model, ex.stream
        assert model is not None and stream is not None
        pool = torch.cuda.graph_pool_handle()
        ex.positions.zero_()
        for b in sorted(self._batches, reverse=True):  # largest first: the pool fits the rest
            for c in sorted(self._contexts, reverse=True):
                args = (ex.cache, ex.tokens[:b], ex.positions[:b], ex.rows[:b], c)
                with torch.inference_mode():
                    with torch.cuda.stream(stream):
                        model.decode(*args)  # warm the shapes outside capture
                    stream.synchronize()
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, pool=pool, stream=stream,
                                          capture_error_mode="thread_local"):  # fmt: skip
                        model.decode(*args)
                ex.graphs[(b, c)] = g
        stream.synchronize()

    def _sync(self, ex: _Executor) -> None:
        if ex.stream is not None:
            ex.stream.synchronize()

    # -- steps --------------------------------------------------------------------------------

    def prefill(self, slots: Sequence[int], prompt_tokens: Sequence[int], worker: int = 0) -> None:
        """Prompts into free rows; their first tokens into the decode buffer."""
        torch, model, ex = self._torch, self._model, self._execs[worker]
        assert model is not None
        for slot in slots:  # a reused slot: its previous sequence has finished
            ex.row_of.pop(slot, None)
            ex.length.pop(slot, None)
        used = set(ex.row_of.values())
        free = [r for r in range(self.spec.max_batch) if r not in used]
        rows = free[: len(slots)]
        for slot, row, n in zip(slots, rows, prompt_tokens, strict=True):
            ex.row_of[slot], ex.length[slot] = row, n
        with torch.inference_mode(), self._ctx(ex):
            r = torch.tensor(rows, dtype=torch.long, device=self._dev)
            lengths = torch.tensor(list(prompt_tokens), dtype=torch.long, device=self._dev)
            ex.tokens[r] = model.prefill(ex.cache, r, lengths, max(prompt_tokens))
        self._sync(ex)

    def decode(self, slots: Sequence[int], context_tokens: Sequence[int], worker: int = 0) -> None:
        """One token for each running slot (compacted into the first rows first)."""
        torch, model, ex = self._torch, self._model, self._execs[worker]
        assert model is not None
        self._compact(ex, slots)
        n = len(slots)
        positions = [0] * n
        for slot, ctx in zip(slots, context_tokens, strict=True):
            positions[ex.row_of[slot]] = ctx - 1  # the new token's position
            ex.length[slot] = ctx
        longest = max(context_tokens)
        with torch.inference_mode(), self._ctx(ex):
            ex.positions[:n] = torch.tensor(positions, dtype=torch.long, device=self._dev)
            if self._batches:
                b = padded_batch(n, self._batches)
                c = padded_batch(longest, self._contexts)
                ex.graphs[(b, c)].replay()
            else:
                model.decode(ex.cache, ex.tokens[:n], ex.positions[:n], ex.rows[:n], longest)
        self._sync(ex)

    def _compact(self, ex: _Executor, slots: Sequence[int]) -> None:
        """Keep the running slots in rows ``[0, n)``: free finished rows, move the rest in."""
        live = set(slots)
        for slot in [s for s in ex.row_of if s not in live]:
            del ex.row_of[slot], ex.length[slot]
        n = len(slots)
        holes = sorted(set(range(n)) - set(ex.row_of.values()))
        movers = [s for s in slots if ex.row_of[s] >= n]
        model = self._model
        assert model is not None
        with self._torch.inference_mode(), self._ctx(ex):
            for slot, hole in zip(movers, holes, strict=True):
                src = ex.row_of[slot]
                model.move_row(ex.cache, src, hole, ex.length[slot])
                ex.tokens[hole] = ex.tokens[src]
                ex.row_of[slot] = hole

    def next_tokens(self, slots: Sequence[int], worker: int = 0) -> list[int]:
        """The token each slot's sequence feeds its next decode step (its latest, greedy)."""
        ex = self._execs[worker]
        return [int(ex.tokens[ex.row_of[s]].item()) for s in slots]

    def infer(self, n: int, worker: int = 0) -> None:
        """One static batch of typical sequences."""
        static_generation(self, self.spec, n, worker)

    # -- the rest -----------------------------------------------------------------------------

    def limits(self) -> Limits:
        """Rows per executor, captured buckets, memory held."""
        torch = self._torch
        mem = None
        if torch is not None and self._dev is not None and self._dev.type == "cuda":
            mem = int(torch.cuda.memory_reserved(self._dev))
        return Limits(self.spec.max_batch, (), self._batches, mem,
                      {"cache_tokens": self.spec.cache_tokens,
                       "graph_contexts": list(self._contexts)})  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Versions, the decoder's dimensions and a hash of what makes its weights, the device."""
        torch, spec = self._torch, self.spec
        versions: dict[str, str] = {}
        name = None
        if torch is not None:
            versions = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
            if self._dev is not None and self._dev.type == "cuda":
                name = torch.cuda.get_device_name(self._dev)
        made_of = json.dumps({**spec.shape.describe(), "seed": spec.seed,
                              "precision": spec.precision}, sort_keys=True)  # fmt: skip
        return {
            "backend": "torch", "versions": versions, "model": spec.shape.name,
            "model_sha256": hashlib.sha256(made_of.encode()).hexdigest(),
            "weights": "random from the seed (the hash is of the dimensions, seed, precision)",
            "precision": spec.precision, "device": self.device, "device_name": name,
            "cuda_graphs": bool(self._batches), "graph_batches": list(self._batches),
            "graph_contexts": list(self._contexts), "batch_size": spec.max_batch,
            "cache_tokens": spec.cache_tokens, "llm": spec.shape.describe(),
        }  # fmt: skip

    def close(self) -> None:
        """Drop graphs, caches and weights; return the memory to the driver."""
        self._execs, self._model = [], None
        if self._torch is not None and self._dev is not None and self._dev.type == "cuda":
            self._torch.cuda.empty_cache()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
