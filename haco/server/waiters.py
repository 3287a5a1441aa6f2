"""Long-polls: `GET /api/jobs/{id}?wait_s=` answered when the job's final state is applied."""

from __future__ import annotations

import asyncio

from haco.replica.node import Applied, Replica


class JobWaiters:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    async def wait_final(self, job_id: str, timeout_s: float) -> None:
        """Return when `job_id` is final on this replica, or after `timeout_s`."""
        job = self.replica.state.jobs.get(job_id)
        if job is None or job.is_final:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            pass
        finally:
            futs = self._waiting.get(job_id)
            if futs is not None:
                if fut in futs:
                    futs.remove(fut)
                if not futs:
                    del self._waiting[job_id]

    def on_applied(self, event: Applied) -> None:
        if not self._waiting:
            return
        jobs = self.replica.state.jobs
        ids = list(self._waiting) if event.replaced else [j for j in event.ended if j in self._waiting]
        for job_id in ids:
            job = jobs.get(job_id)
            if job is None or job.is_final:
                for fut in self._waiting.pop(job_id, []):
                    if not fut.done():
                        fut.set_result(None)
