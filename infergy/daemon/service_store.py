"""The service's care of its store: integrity at start, measured health, results kept.

:class:`StoreKeeper` does three things for :class:`~infergy.daemon.service.Service`:

- at start, :meth:`StoreKeeper.check_integrity` runs SQLite's ``quick_check`` and reads
  every result row; a damaged file is logged (what is damaged), rebuilt from its tables when
  only its indexes are damaged (the damaged file kept beside it), and the runs still
  unreadable are named, while everything intact is served;
- :meth:`StoreKeeper.health` is measured, not assumed: the store's filesystem (read-only:
  ``down``; full or nearly full: ``degraded``), damage found at start, results waiting to be
  stored, a job journal that cannot be written;
- a result the store refused (:meth:`StoreKeeper.keep`) stays in memory and is stored, then
  queued for MQTT, as soon as the store takes it (:meth:`StoreKeeper.run` retries every
  ``RETRY_S``); at a stop :meth:`StoreKeeper.last_try` tries once more and logs what is lost.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from infergy.daemon.disk import disk_problem, free_bytes, low_space, read_only
from infergy.daemon.http_models import ComponentHealth, HealthState
from infergy.daemon.session import SessionOutcome
from infergy.errors import InfergyError
from infergy.exporters.outbox import Outbox
from infergy.store.db import Store
from infergy.store.integrity import discard

logger = logging.getLogger(__name__)

RETRY_S = 10.0
"""How often results the store refused are offered to it again."""
PROBE_S = 5.0
"""How often the store's filesystem is looked at (free space, read-only)."""
_SHOWN = 5
_REFUSED = "the result could not be stored: "


@dataclass
class _Kept:
    outcome: SessionOutcome
    publish: bool
    stored: bool
    tries: int = 1
    error: str = ""


class StoreKeeper:
    """See the module docstring.

    Args:
        store: the open results store.
        outbox: where kept results are queued for MQTT once stored (``None``: no MQTT).
    """

    def __init__(self, store: Store, outbox: Outbox | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self.damage: str | None = None
        """What the start-up check found damaged, in one line (``None``: sound)."""
        self._kept: dict[str, _Kept] = {}
        self._disk: tuple[HealthState, str] | None = self._look()

    # -- start-up ------------------------------------------------------------------------------

    def check_integrity(self) -> Path | None:
        """Check the file; a sound rebuilt copy to swap in (:func:`swap_in`) if it helps.

        Damage is logged: what ``quick_check`` found, then the runs that cannot be read. A
        store damaged only in its indexes is rebuilt from its tables into a copy, which is
        returned for the caller to put in place (the store must be closed for that).
        """
        problems = self.store.integrity_problems()
        if not problems:
            self._name_unreadable(payloads=False)  # result rows only: cheap, at every start
            return None
        path = self.store.path
        logger.warning("store %s is damaged: %s", path, "; ".join(problems[:_SHOWN]))
        copy = path.with_name(path.name + ".rebuilt")
        discard(copy)
        try:
            self.store.copy_into(copy)
            with Store.open(copy) as rebuilt:
                left = rebuilt.integrity_problems()
        except InfergyError as err:
            logger.warning("store %s cannot be rebuilt from its tables (%s): the damage is in "
                           "the runs' own pages", path, err)  # fmt: skip
            discard(copy)
        else:
            if not left:
                return copy
            logger.warning("store %s: a rebuilt copy is still damaged (%s)", path, left[0])
            discard(copy)
        self._name_unreadable(payloads=True)
        if self.damage is None:
            self.damage = f"damaged pages outside the runs ({problems[0]})"
            logger.warning("store %s: every run reads back; the damage is elsewhere", path)
        return None

    def rebuilt(self, store: Store, backup: Path) -> None:
        """The rebuilt copy is in place (``store``); the damaged file is kept as ``backup``."""
        self.store = store
        self.damage = (
            f"it was damaged (in its indexes) and has been rebuilt; the damaged file is {backup}"
        )
        logger.warning("store %s: rebuilt from its intact tables, every run is readable again; "
                       "the damaged file is kept as %s", store.path, backup)  # fmt: skip

    def _name_unreadable(self, *, payloads: bool) -> None:
        path = self.store.path
        try:
            unreadable, total = self.store.unreadable_runs(payloads=payloads)
        except InfergyError as err:
            self.damage = f"damaged: {err}"
            logger.error("store %s: the runs cannot be listed: %s", path, err)
            return
        if not unreadable:
            return
        ids = sorted(unreadable)
        shown = ", ".join(ids[:_SHOWN]) + (", ..." if len(ids) > _SHOWN else "")
        self.damage = f"damaged: {len(ids)} run(s) cannot be read ({shown})"
        for run_id in ids:
            logger.warning("store %s: run %s cannot be read: %s", path, run_id, unreadable[run_id])
        rest = (f"the other {total - len(ids)} run(s) are intact and served"
                if total > len(ids) else "no stored run can be read")  # fmt: skip
        logger.warning("store %s: %d of %d runs cannot be read; %s (back the file up, and move "
                       "it away to start a new one)", path, len(ids), total, rest)  # fmt: skip

    # -- health --------------------------------------------------------------------------------

    def _look(self) -> tuple[HealthState, str] | None:
        folder = self.store.path.parent
        if read_only(folder):
            return "down", f"the store's filesystem ({folder}) is read-only"
        problem = disk_problem(folder)
        if problem is not None:
            return "degraded", problem
        free = free_bytes(folder)
        if free is not None and low_space(folder):
            return "degraded", f"only {free / (1 << 20):.1f} MiB free for the store ({folder})"
        return None

    def health(self, journal_error: str | None = None) -> ComponentHealth:
        """The store's health now (the filesystem as of the last look, at most PROBE_S old)."""
        state: HealthState = "up"
        details: list[str] = []
        if self._disk is not None:
            state, details = self._disk[0], [self._disk[1]]
        if self._kept:
            first = next(iter(self._kept.values()))
            details.append(f"{len(self._kept)} result(s) waiting to be stored: {first.error}")
        if journal_error is not None:
            details.append(f"the job journal cannot be written: {journal_error}")
        if self.damage is not None:
            details.append(f"the file is {self.damage}" if self.damage.startswith("damaged")
                           else self.damage)  # fmt: skip
        if details and state == "up":
            state = "degraded"
        return ComponentHealth(state=state, detail="; ".join(details) or None)

    # -- results the store refused -------------------------------------------------------------

    def keep(self, outcome: SessionOutcome, *, publish: bool, stored: bool = False) -> None:
        """Hold a result the store refused (or stored but could not queue) and retry it."""
        run_id = str(outcome.result.get("run_id"))
        error = outcome.unstored or "the MQTT outbox could not be written"
        self._kept[run_id] = _Kept(outcome, publish, stored, error=error)
        logger.warning("run %s: its result is kept in memory and offered to the store every "
                       "%g s until it takes it (%s)", run_id, RETRY_S, error)  # fmt: skip

    async def run(self) -> None:
        """Look at the filesystem every PROBE_S and retry kept results every RETRY_S."""
        loop = asyncio.get_running_loop()
        next_retry = loop.time() + RETRY_S
        while True:
            await asyncio.sleep(PROBE_S)
            self._disk = await asyncio.to_thread(self._look)
            if self._kept and loop.time() >= next_retry:
                await asyncio.to_thread(self._retry)
                next_retry = loop.time() + RETRY_S

    async def last_try(self, timeout_s: float) -> None:
        """At a stop: offer the kept results once more; log each that is lost."""
        if not self._kept:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(asyncio.to_thread(self._retry))
        except TimeoutError:
            pass
        for run_id, kept in self._kept.items():
            where = next((str(f) for f in kept.outcome.files if f.name == "result.json"), None)
            logger.error("run %s: its result could not be stored (%s); it is lost with this "
                         "process%s", run_id, kept.error,
                         f" except for {where}" if where else "")  # fmt: skip

    def _retry(self) -> None:
        for run_id, kept in list(self._kept.items()):
            o = kept.outcome
            problems = o.result.get("problems", [])
            for i, text in enumerate(problems):
                if text.startswith(_REFUSED):  # true of the first try; say what happened instead
                    problems[i] = (f"the result was stored on a later try (the store first "
                                   f"refused it: {text.removeprefix(_REFUSED)})")  # fmt: skip
            try:
                if not kept.stored:
                    self.store.save_run(o.result, o.traces, o.queries)
                    kept.stored = True
                if kept.publish and self.outbox is not None:
                    self.outbox.put_result(o.result)
            except InfergyError as err:
                kept.tries += 1
                kept.error = str(err)
                continue
            del self._kept[run_id]
            logger.info("run %s: its result is stored now (after %d tries)", run_id, kept.tries)
