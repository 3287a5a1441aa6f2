"""Feeds the results store from applied entries: off the loop and off the tick thread.

Listeners collect the job ids whose attempts ended; one task writes their rows in batches
through `asyncio.to_thread`, with the applied index as the watermark. Insert-or-ignore by
(job, attempt) makes replays, snapshot installs and rebuilds neither lose nor double rows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..replication import Applied, Replica

log = logging.getLogger(__name__)


class ResultsFeed:
    def __init__(self, replica: Replica, store: Any) -> None:
        self.replica = replica
        self.store = store
        self._pending: dict[str, None] = {}
        self._index = 0
        self._rebuild = False
        self._wake = asyncio.Event()

    def on_applied(self, event: Applied) -> None:
        self._index = max(self._index, event.index)
        if event.replaced:
            self._rebuild = True
        for job_id in event.ended:
            self._pending[job_id] = None
        self._wake.set()

    async def run(self) -> None:
        from ..results import rows_for_job
        if await asyncio.to_thread(self.store.watermark) < self.replica.applied_index:
            self._rebuild = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._rebuild:
                    self._rebuild = False
                    self._pending.clear()
                    jobs = list(self.replica.state.jobs.values())
                    await asyncio.to_thread(self.store.rebuild_from, jobs, self.replica.applied_index)
                    continue
                ids, self._pending = list(self._pending), {}
                if not ids:
                    continue
                jobs_by_id = self.replica.state.jobs
                jobs = [job for job_id in ids if (job := jobs_by_id.get(job_id)) is not None]  # immutable records
                index = self._index
                # rows_for_job decodes stats and re-encodes results as JSON: on the loop it cost
                # ~30% of a follower's loop at a few hundred jobs/s, so it runs with the insert
                await asyncio.to_thread(lambda: self.store.record(
                    [row for job in jobs for row in rows_for_job(job, index)], index))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("results write failed; will rebuild")
                self._rebuild = True
                await asyncio.sleep(1.0)
                self._wake.set()
