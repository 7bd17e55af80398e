"""The service's job journal: every accepted job in the store, from before its ``202`` on.

:meth:`JobJournal.add` is the scheduler's ``persist`` hook: the job's row is committed
(``synchronous=FULL``) before the job is queued, so the HTTP and MQTT replies never name a job
a crash could lose. Later state changes (``running``, a final state) are written by one writer
task (:meth:`JobJournal.run`), newest state per job, in order; a failed write is retried and
logged, never raised into the queue. :mod:`infergy.daemon.recovery` reads the journal at start.
"""

from __future__ import annotations

import asyncio
import logging

from infergy.daemon.scheduler import Job, JobState
from infergy.errors import InfergyError
from infergy.store.db import JobRow, Store

logger = logging.getLogger(__name__)

RETRY_S = 5.0
"""A journal write that failed (disk full, store locked) is retried this often."""


def job_row(job: Job, clock_offset_ns: int | None = None) -> JobRow:
    """The journal row of a job as it is now."""
    return JobRow(
        run_id=job.run_id,
        submitted_unix_ns=job.submitted_unix_ns,
        state=job.state.value,
        spec_json=job.spec.model_dump_json(),
        started_unix_ns=job.started_unix_ns,
        finished_unix_ns=job.finished_unix_ns,
        error=job.error,
        clock_offset_ns=clock_offset_ns if job.state is JobState.RUNNING else None,
    )


class JobJournal:
    """Writes the scheduler's jobs to the store's ``jobs`` table.

    Args:
        store: the open results store.
        clock_offset_ns: the service's session clock (``wall0_ns - mono0_ns``), kept with a
            running job so its runner's monotonic records can be placed after a crash.
    """

    def __init__(self, store: Store, *, clock_offset_ns: int) -> None:
        self._store = store
        self._clock_offset_ns = clock_offset_ns
        self._dirty: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        """The last write failure, until a write succeeds (for ``/healthz``)."""

    async def add(self, job: Job) -> None:
        """Commit a new job (the scheduler's ``persist``); raises ``StoreError`` if it cannot."""
        await asyncio.to_thread(self._store.job_put, [job_row(job)])

    def changed(self, job: Job) -> None:
        """Note a state change; the writer task commits it (call from the event loop)."""
        self._dirty[job.run_id] = job
        self._wake.set()

    async def run(self) -> None:
        """Write state changes until cancelled (put it in the service's TaskGroup)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._write():
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Write what is pending now; False if it could not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._dirty:
                    if not await self._write():
                        await asyncio.sleep(0.2)
        except TimeoutError:
            return False
        return True

    async def _write(self) -> bool:
        if not self._dirty:
            return True
        jobs, self._dirty = self._dirty, {}
        rows = [job_row(job, self._clock_offset_ns) for job in jobs.values()]
        try:
            await asyncio.to_thread(self._store.job_put, rows)
        except InfergyError as err:
            for run_id, job in jobs.items():
                self._dirty.setdefault(run_id, job)  # a newer change, if any, wins
            if self.last_error is None:
                logger.warning("the job journal cannot be written (retrying every %g s): %s",
                               RETRY_S, err)  # fmt: skip
            self.last_error = str(err)
            return False
        if self.last_error is not None:
            logger.info("the job journal is written again")
            self.last_error = None
        return True
