"""Continuous batching for the generative workload: which sequences run in the next step.

Pure bookkeeping, no clock reads and no I/O (the SUT's workers, :mod:`infergy.runners.gen_sut`,
time and run the steps). Each executor owns a :class:`SlotBatcher`: ``max_batch`` KV cache
slots. Between steps it admits waiting samples into free slots, oldest first, as long as their
prompts fit one prefill step's token budget (:data:`~infergy.core.llm.MAX_PREFILL_TOKENS`; the
first always fits); the admitted ones are prefilled together, which yields their first token;
then every running sequence decodes one token per step, and a sequence leaves its slot once it
has produced its output length. So a finished sequence is replaced at the next step
(iteration-level batching, as serving engines do), and a decode step's batch is the number of
sequences running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Pending:
    """A sample LoadGen issued that waits for a slot.

    Attributes:
        sample_id: LoadGen's response id.
        issue_ns: when it was issued.
        input_tokens: its prompt's length.
        output_tokens: how many tokens it will produce (>= 2).
    """

    sample_id: int
    issue_ns: int
    input_tokens: int
    output_tokens: int


@dataclass
class Running:
    """A sequence in a KV cache slot."""

    pending: Pending
    slot: int
    produced: int = 0
    first_ns: int = 0

    @property
    def context_tokens(self) -> int:
        """Tokens in its cache: the prompt and what it produced so far."""
        return self.pending.input_tokens + self.produced

    @property
    def done(self) -> bool:
        """Whether it produced all its tokens."""
        return self.produced >= self.pending.output_tokens


def admissible(prompts: Sequence[int], free_slots: int, budget_tokens: int) -> int:
    """How many of ``prompts`` (oldest first) one prefill step takes: slots and token budget.

    The first one is always taken when a slot is free (a prompt longer than the budget still
    runs, alone).
    """
    taken, tokens = 0, 0
    for n in prompts:
        if taken >= free_slots or (taken and tokens + n > budget_tokens):
            break
        taken += 1
        tokens += n
    return taken


class SlotBatcher:
    """The KV cache slots of one executor and the sequences in them.

    Args:
        max_batch: slots (the largest decode batch).
    """

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._free = list(range(max_batch - 1, -1, -1))  # pop() gives the lowest slot
        self._running: dict[int, Running] = {}

    @property
    def free(self) -> int:
        """Free slots."""
        return len(self._free)

    @property
    def idle(self) -> bool:
        """No sequence is running."""
        return not self._running

    @property
    def running(self) -> list[Running]:
        """The running sequences, by slot."""
        return [self._running[s] for s in sorted(self._running)]

    def admit(self, new: Sequence[Pending]) -> list[Running]:
        """Put ``new`` into free slots (the caller took no more than :attr:`free`)."""
        if len(new) > len(self._free):
            msg = f"{len(new)} sequences admitted with {len(self._free)} free slots"
            raise ValueError(msg)
        admitted = [Running(p, self._free.pop()) for p in new]
        for r in admitted:
            self._running[r.slot] = r
        return admitted

    def prefilled(self, seqs: Sequence[Running], t_ns: int) -> list[Running]:
        """A prefill of ``seqs`` ended at ``t_ns``: their first token; returns the finished."""
        for r in seqs:
            r.produced, r.first_ns = 1, t_ns
        return self._retire([r for r in seqs if r.done])

    def decoded(self, seqs: Sequence[Running]) -> list[Running]:
        """A decode step of ``seqs`` ended: one token each; returns the finished."""
        for r in seqs:
            r.produced += 1
        return self._retire([r for r in seqs if r.done])

    def drop_all(self) -> list[Running]:
        """Empty every slot (the run is cut short); returns what was running."""
        dropped = self.running
        self._retire(dropped)
        return dropped

    def _retire(self, seqs: list[Running]) -> list[Running]:
        for r in seqs:
            del self._running[r.slot]
            self._free.append(r.slot)
        self._free.sort(reverse=True)
        return seqs
