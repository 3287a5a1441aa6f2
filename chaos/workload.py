"""The workload: several concurrent HacoClients, each a seeded loop of operations, every one
recorded in the history with invoke and completion times and its outcome.

Operations: plain submissions (noop), long jobs (shell sleep, so worker faults hit running jobs),
short jobs of the limited queue (chaos/queue_limit.py),
failing jobs (shell `exit 1`, retried once), DAGs (a child that depends on an acknowledged
parent), submit-then-cancel, invalid submissions (role `invalid`), and retries of an earlier key with the very same spec (the answer
must be the same job). Keys are unique per client (`c<client>-<n>`).

Outcome: `ok` for a 2xx; `fail` for a refusal (4xx: nothing was applied); `unknown` otherwise. The
client retries 503/504 and connection errors with the same body until its deadline and then
raises the *last* error, so even a final NotApplied may hide an earlier maybe-applied try.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp

from haco.client import HacoClient
from haco.errors import (BadRequest, Conflict, Forbidden, HacoError, NotFound, PayloadTooLarge, Rejected,
                         Unauthorized)

from . import queue_limit
from .history import HistoryWriter, now

__all__ = ["Workload"]

_REFUSED = (Rejected, BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized, Forbidden)
CLIENT_DEADLINE_S = 20.0
INVALID_SPECS: tuple[dict[str, Any], ...] = (
    {"type": "noop", "priority": "high"}, {"type": "Bad Type"}, {"type": "shell", "timeout_s": -1},
    {"type": "noop", "depends_on": ["no-such-job"]}, {"type": "noop", "bogus": 1})


def recorded(runs: Path, then: str) -> list[str]:
    """A shell argv that appends "job attempt pid" to `runs` (one line per execution), then runs `then`."""
    return ["sh", "-c", f'echo "$HACO_JOB_ID $HACO_ATTEMPT $$" >> {runs}; {then}']


def _spec(role: str, n: int, rng: random.Random, runs: Path) -> dict[str, Any]:
    if role == "long":
        return {"type": "shell", "payload": {"argv": recorded(runs, f"exec sleep {rng.uniform(0.5, 2.0):.2f}")},
                "timeout_s": 60, "max_retries": 2, "backoff_s": 0.2}
    if role == "failing":
        return {"type": "shell", "payload": {"argv": recorded(runs, "exit 1")}, "max_retries": 1, "backoff_s": 0.1}
    if role == "cancel":
        return {"type": "shell", "payload": {"argv": recorded(runs, "exec sleep 8")}, "timeout_s": 60}
    if role == "limited":
        return queue_limit.spec(recorded(runs, queue_limit.sleep_for(rng)))
    return {"type": "noop", "payload": {"n": n}, "max_retries": 2, "backoff_s": 0.1}


class Workload:
    """`run(stop)` drives `concurrency` clients until `stop` is set; `keys` maps every key sent to its spec."""

    def __init__(self, urls: list[str], history: HistoryWriter, *, seed: int, concurrency: int, runs: Path) -> None:
        self.urls = urls
        self.runs = runs  #: every shell job appends one line per execution here (the executions check)
        self.history = history
        self.seed = seed
        self.concurrency = concurrency
        self.counts: dict[str, int] = {"ok": 0, "fail": 0, "unknown": 0}

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._client(cid, stop) for cid in range(self.concurrency)))

    async def _client(self, cid: int, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed * 1009 + cid)
        urls = list(self.urls)
        rng.shuffle(urls)
        sent: list[tuple[str, dict[str, Any], str]] = []
        n = 0
        async with HacoClient(urls, deadline_s=CLIENT_DEADLINE_S, request_timeout_s=3.0) as client:
            while not stop.is_set():
                n += 1
                pick = rng.random()
                role = ("plain" if pick < 0.40 else "long" if pick < 0.55 else "failing" if pick < 0.65
                        else "dag" if pick < 0.75 else "cancel" if pick < 0.83 else "invalid" if pick < 0.86
                        else "limited" if pick < 0.93 else "retry")
                if role == "invalid":  # bad input: must be refused with a 4xx and create nothing
                    await self._submit(client, cid, f"c{cid}-{n}", rng.choice(INVALID_SPECS), "invalid")
                elif role == "retry" and sent:
                    key, spec, was = rng.choice(sent)
                    await self._submit(client, cid, key, spec, was, retry=True)
                elif role == "dag":
                    parent = await self._fresh(client, cid, n, "plain" if rng.random() < 0.5 else "long", rng, sent)
                    if parent is not None:
                        n += 1
                        spec = {**_spec("plain", n, rng, self.runs), "depends_on": [parent]}
                        await self._remember(client, cid, f"c{cid}-{n}", spec, "dag", sent)
                elif role == "cancel":
                    job_id = await self._fresh(client, cid, n, "cancel", rng, sent)
                    if job_id is not None:
                        await self._cancel(client, cid, job_id)
                else:
                    await self._fresh(client, cid, n, "plain" if role == "retry" else role, rng, sent)
                try:
                    await asyncio.wait_for(stop.wait(), rng.uniform(0.05, 0.3))
                except asyncio.TimeoutError:
                    pass

    async def _fresh(self, client: HacoClient, cid: int, n: int, role: str, rng: random.Random,
                     sent: list[tuple[str, dict[str, Any], str]]) -> str | None:
        return await self._remember(client, cid, f"c{cid}-{n}", _spec(role, n, rng, self.runs), role, sent)

    async def _remember(self, client: HacoClient, cid: int, key: str, spec: dict[str, Any], role: str,
                        sent: list[tuple[str, dict[str, Any], str]]) -> str | None:
        sent.append((key, spec, role))
        return await self._submit(client, cid, key, spec, role)

    async def _submit(self, client: HacoClient, cid: int, key: str, spec: dict[str, Any], role: str,
                      *, retry: bool = False) -> str | None:
        invoke_mono, invoke_wall = now()
        job_id: str | None = None
        error: str | None = None
        try:
            job_id = (await client.submit(spec, key=key)).job_id
            outcome = "ok"
        except _REFUSED as exc:
            outcome, error = "fail", f"{type(exc).__name__}: {exc}"
        except (HacoError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            outcome, error = "unknown", f"{type(exc).__name__}: {exc}"
        done_mono, done_wall = now()
        self.counts[outcome] += 1
        self.history.write("op", op="submit", client=cid, key=key, job_id=job_id, role=role, retry=retry,
                           invoke_mono=invoke_mono, invoke_wall=invoke_wall, complete_mono=done_mono,
                           complete_wall=done_wall, outcome=outcome, error=error)
        return job_id

    async def _cancel(self, client: HacoClient, cid: int, job_id: str) -> None:
        invoke_mono, invoke_wall = now()
        error: str | None = None
        try:
            await client.cancel(job_id)
            outcome = "ok"
        except _REFUSED as exc:
            outcome, error = "fail", f"{type(exc).__name__}: {exc}"
        except (HacoError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            outcome, error = "unknown", f"{type(exc).__name__}: {exc}"
        done_mono, done_wall = now()
        self.history.write("op", op="cancel", client=cid, key=None, job_id=job_id, invoke_mono=invoke_mono,
                           invoke_wall=invoke_wall, complete_mono=done_mono, complete_wall=done_wall,
                           outcome=outcome, error=error)
