"""The worker's side of log reads and progress: answers the leader's `log_read` frames from the
attempt log files, collects progress to forward, and sweeps old logs.

Frames (worker protocol v1, both binary msgpack like every other):
- leader -> worker `log_read`: `{rid, job_id, attempt, offset, limit, streams: [..], tail?, wait_s?}`;
  `tail` (lines) replaces `offset` with where the last `tail` lines begin; `wait_s` (<= 10) holds the
  answer until there is output past `offset` or the attempt's output is complete.
- worker -> leader `log_data`: `{rid, ok: true, chunks: [[pos, stream (1 out, 2 err), t_ms, bytes]],
  next_offset, start, at_end, ended, exit_code, skipped}` or `{rid, ok: false, code, message}`.
- worker -> leader `progress`: `{items: [[job_id, attempt, fraction, message, t_ms], ...]}`, only
  changed values, at most every PROGRESS_EVERY_S.

Bounded: at most READS_AT_ONCE reads run (each at most LOG_PAGE_BYTES_MAX in memory), the rest wait
their turn; the leader bounds how many it asks at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from haco.worker.joblog import BOTH, STREAMS, AttemptLogReader, AttemptLogWriter, LogPage, sweep
from haco.worker.joblog.format import STREAM_CODE
from haco.worker.protocol import Attempt, encode

log = logging.getLogger(__name__)

LOG_PAGE_BYTES_MAX: Final = 1024 * 1024  #: output bytes in one `log_data` frame (frames are <= 4 MiB)
WAIT_S_MAX: Final = 10.0
POLL_S: Final = 0.1  #: how often a held `log_read` looks for new output
READS_AT_ONCE: Final = 4
READERS_KEPT: Final = 64  #: readers (each remembers where its last page ended) kept for followers
PROGRESS_EVERY_S: Final = 0.25
TAIL_LINES_MAX: Final = 1_000_000


class LogService:
    def __init__(self, root: Path, running: Callable[[Attempt], bool]) -> None:
        self.root = root
        self._running = running
        self._readers: OrderedDict[Attempt, AttemptLogReader] = OrderedDict()
        self._slots = asyncio.Semaphore(READS_AT_ONCE)
        self._sent: dict[Attempt, tuple[float, str]] = {}

    async def answer(self, body: dict[str, Any]) -> bytes:
        """The `log_data` frame answering one `log_read`."""
        rid = body.get("rid")
        try:
            key: Attempt = (str(body["job_id"]), int(body["attempt"]))
            offset = max(0, int(body.get("offset") or 0))
            limit = min(LOG_PAGE_BYTES_MAX, max(1, int(body.get("limit") or LOG_PAGE_BYTES_MAX)))
            streams = frozenset(str(s) for s in body.get("streams") or BOTH)
            tail = body.get("tail")
            tail = None if tail is None else min(TAIL_LINES_MAX, max(0, int(tail)))
            wait_s = min(WAIT_S_MAX, max(0.0, float(body.get("wait_s") or 0.0)))
            if not streams or not streams <= set(STREAMS):
                raise ValueError(f"streams must be among {', '.join(STREAMS)}")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            return encode("log_data", rid=rid, ok=False, code="MALFORMED", message=str(exc)[:200])
        reader = self._reader(key)
        if not await asyncio.to_thread(reader.exists):
            return encode("log_data", rid=rid, ok=False, code="NO_LOG",
                          message=f"no log of attempt {key[1]} of {key[0]} on this worker")
        if tail is not None:
            async with self._slots:
                offset = await asyncio.to_thread(reader.tail_offset, tail, streams)
        page = await self._page(key, reader, offset, limit, streams, wait_s)
        ended = page.ended or (page.at_end and not self._running(key))  # its writer is gone: nothing more comes
        return encode("log_data", rid=rid, ok=True,
                      chunks=[[c.pos, STREAM_CODE[c.stream], c.t_ms, c.data] for c in page.chunks],
                      next_offset=page.next_offset, start=page.start, at_end=page.at_end, ended=ended,
                      exit_code=page.exit_code, skipped=page.skipped)

    async def _page(self, key: Attempt, reader: AttemptLogReader, offset: int, limit: int,
                    streams: frozenset[str], wait_s: float) -> LogPage:
        deadline = time.monotonic() + wait_s
        while True:
            async with self._slots:
                page = await asyncio.to_thread(reader.read, offset, limit, streams)
            if page.chunks or page.ended or not page.at_end or not self._running(key):
                return page
            if time.monotonic() + POLL_S > deadline:
                return page
            await asyncio.sleep(POLL_S)

    def _reader(self, key: Attempt) -> AttemptLogReader:
        reader = self._readers.pop(key, None) or AttemptLogReader(self.root, key[0], key[1])
        self._readers[key] = reader
        while len(self._readers) > READERS_KEPT:
            self._readers.popitem(last=False)
        return reader

    def progress_frame(self, writers: dict[Attempt, AttemptLogWriter]) -> bytes | None:
        """A `progress` frame with what changed since the last one, or None."""
        items = []
        for key, writer in writers.items():
            p = writer.progress
            if p is None or self._sent.get(key) == (p.fraction, p.message):
                continue
            self._sent[key] = (p.fraction, p.message)
            items.append([key[0], key[1], p.fraction, p.message, p.t_ms])
        for key in [k for k in self._sent if k not in writers]:
            del self._sent[key]
        return encode("progress", items=items) if items else None

    async def sweep(self, *, keep_s: float, budget_bytes: int, active: set[Attempt]) -> None:
        try:
            res = await asyncio.to_thread(sweep, self.root, keep_s=keep_s, budget_bytes=budget_bytes,
                                          now_s=time.time(), active=active)
        except OSError as exc:
            log.warning("log retention sweep failed root=%s error=%s", self.root, exc)
            return
        if res.removed:
            log.info("old job logs removed attempts=%d freed_bytes=%d kept_bytes=%d", res.removed, res.freed_bytes,
                     res.kept_bytes)


__all__ = ["LOG_PAGE_BYTES_MAX", "LogService", "PROGRESS_EVERY_S", "WAIT_S_MAX"]
