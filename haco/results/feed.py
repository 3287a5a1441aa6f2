"""Feeds the results store from applied entries: off the loop and off the tick thread.

Listeners collect the job ids whose attempts ended; one task writes their rows in batches
through `asyncio.to_thread`, with the applied index as the watermark. Insert-or-ignore by
(job, attempt) makes replays, snapshot installs and rebuilds neither lose nor double rows.

Writes are spaced WRITE_GAP_S apart: a DuckDB write costs ~25-30 ms of CPU whatever its size
(the insert-or-ignore's index probe, the watermark, the commit) plus ~30 us a row, on each of three
replicas. At 0.25 s apart that fixed part was ~150 us of CPU per finished job and replica at a few
hundred jobs/s, the biggest item of an end-to-end run; at 1 s it is a quarter of that. A batch
goes early once WRITE_BATCH_ROWS jobs wait, which bounds a write's size and pause. A results query
does not wait for the gap: `flushed()` writes what is pending at once, so SQL still reads its own
finished jobs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from haco.replica.node import Applied, Replica

log = logging.getLogger(__name__)

WRITE_GAP_S = 1.0  #: at least this long between two writes, unless a query asks for the rows now
WRITE_BATCH_ROWS = 5_000  #: ...or this many ended jobs wait


class ResultsFeed:
    def __init__(self, replica: Replica, store: Any) -> None:
        self.replica = replica
        self.store = store
        self._pending: dict[str, None] = {}
        self._index = 0  #: highest applied index published to us
        self._done = 0  #: every job that ended up to this index is in the store
        self._busy = False  #: a write is under way
        self._rebuild = False
        self._wake = asyncio.Event()
        self._now = asyncio.Event()  #: skip the gap: a query waits
        self._written = asyncio.Event()  #: set after each write attempt (flushed() waits on it)

    def on_applied(self, event: Applied) -> None:
        self._index = max(self._index, event.index)
        if event.replaced:
            self._rebuild = True
        for job_id in event.ended:
            self._pending[job_id] = None
        if len(self._pending) >= WRITE_BATCH_ROWS:
            self._now.set()
        if self._pending or self._rebuild:
            self._wake.set()

    def _caught_up(self, target: int) -> bool:
        return self._done >= target or not (self._pending or self._busy or self._rebuild)

    async def flushed(self, timeout_s: float) -> bool:
        """Wait until every attempt that ended in what this replica applied so far is in the store;
        False after `timeout_s`."""
        target = self._index
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._caught_up(target):
            self._now.set()
            self._wake.set()
            self._written.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._written.wait()
            except TimeoutError:
                return False
        return True

    async def run(self) -> None:
        from haco.results.store import rows_for_job
        loop = asyncio.get_running_loop()
        if await asyncio.to_thread(self.store.watermark) < self.replica.applied_index:
            self._rebuild = True
            self._wake.set()
        last_write = -WRITE_GAP_S
        while True:
            await self._wake.wait()
            gap = last_write + WRITE_GAP_S - loop.time()
            if gap > 0 and not self._now.is_set():
                try:
                    async with asyncio.timeout(gap):
                        await self._now.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            self._now.clear()
            self._busy = True
            try:
                index = self._index
                if self._rebuild:
                    self._rebuild = False
                    self._pending.clear()
                    jobs = list(self.replica.state.jobs.values())
                    await asyncio.to_thread(self.store.rebuild_from, jobs, self.replica.applied_index)
                else:
                    ids, self._pending = list(self._pending), {}
                    jobs_by_id = self.replica.state.jobs
                    jobs = [job for job_id in ids if (job := jobs_by_id.get(job_id)) is not None]  # immutable records
                    # rows_for_job decodes stats and re-encodes results as JSON: on the loop it cost
                    # ~30% of a follower's loop at a few hundred jobs/s, so it runs with the insert
                    await asyncio.to_thread(lambda: self.store.record(
                        [row for job in jobs for row in rows_for_job(job, index)], index))
                self._done = max(self._done, index)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("results write failed; will rebuild")
                self._rebuild = True
                await asyncio.sleep(1.0)
                self._wake.set()
            finally:
                self._busy = False
                last_write = loop.time()
                self._written.set()


RESULTS_FEED = web.AppKey("results_feed", ResultsFeed)
