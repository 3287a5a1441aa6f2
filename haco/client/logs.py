"""`HacoClient.logs`: a job attempt's output as an async iterator of chunks, paged or followed.

Paged (`follow=False`): GET /api/jobs/{id}/logs pages from `offset` until the end of what the
worker has, with the client's usual failover and retries. Followed: the NDJSON stream of
`?follow=1` (haco/server/routes/logs.py); when it breaks (a replica or the leader died, the worker
moved to a new leader) the client asks again, on any replica, from the offset after the last byte
it yielded, so no byte is lost or repeated. It gives up after `resume_s` without progress, or at
once when the attempt has ended and its worker is offline (WorkerOffline, with the replicated tail).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from haco.errors import HacoError, NotApplied, NotStarted, OutcomeUnknown, Unreachable, WorkerOffline

if TYPE_CHECKING:
    from haco.client import HacoClient

log = logging.getLogger(__name__)

STREAM_LINE_BYTES_MAX: Final = 8 * 1024 * 1024  #: one NDJSON line (a 64 KiB chunk, escaped) is far below
_RETRY_PAUSE_S: Final = 0.3


@dataclass(frozen=True, slots=True)
class LogChunk:
    offset: int  #: log offset of the first byte (counts both streams)
    stream: str  #: "stdout" or "stderr"
    t_ms: int  #: when the worker read it from the job (epoch ms)
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def chunk_from_json(obj: dict[str, Any]) -> LogChunk:
    data = obj["text"].encode("utf-8") if "text" in obj else base64.b64decode(obj.get("b64", ""))
    return LogChunk(int(obj["offset"]), str(obj["stream"]), int(obj.get("t_ms") or 0), data)


@dataclass(slots=True)
class LogCursor:
    """Where a read is: what the caller learns as chunks arrive (attempt pinned by the first answer)."""

    attempt: int | None
    offset: int
    tail: int | None
    worker_id: str | None = None
    ended: bool = False
    exit_code: int | None = None
    dropped_bytes: int = 0


async def iter_logs(client: HacoClient, job_id: str, *, attempt: int | None = None, stream: str = "both",
                    offset: int = 0, tail: int | None = None, follow: bool = False, resume_s: float = 60.0,
                    cursor: LogCursor | None = None) -> AsyncIterator[LogChunk]:
    cur = cursor or LogCursor(attempt, offset, tail)
    cur.attempt, cur.offset, cur.tail = attempt if cur.attempt is None else cur.attempt, offset, tail
    if not follow:
        async for chunk in _pages(client, job_id, stream, cur):
            yield chunk
        return
    async for chunk in _follow(client, job_id, stream, cur, resume_s):
        yield chunk


def _params(stream: str, cur: LogCursor, follow: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"stream": stream, "offset": cur.offset}
    if cur.attempt is not None:
        params["attempt"] = cur.attempt
    if cur.tail is not None:
        params["tail"] = cur.tail
    if follow:
        params["follow"] = 1
    return params


async def _pages(client: HacoClient, job_id: str, stream: str, cur: LogCursor) -> AsyncIterator[LogChunk]:
    for _ in range(1_000_000):  # bounded: a 64 MiB log is 64 pages
        page = await client.request("GET", f"/api/jobs/{job_id}/logs", params=_params(stream, cur, False))
        if page.get("attempt") is None:  # not started yet: nothing to read
            return
        cur.attempt, cur.worker_id, cur.tail = int(page["attempt"]), page.get("worker_id"), None
        cur.dropped_bytes = int(page.get("dropped_bytes") or 0)
        for obj in page.get("chunks") or ():
            chunk = chunk_from_json(obj)
            cur.offset = chunk.end
            yield chunk
        cur.offset = int(page.get("next_offset") or cur.offset)
        if page.get("at_end"):
            cur.ended, cur.exit_code = bool(page.get("ended")), page.get("exit_code")
            return


async def _follow(client: HacoClient, job_id: str, stream: str, cur: LogCursor,
                  resume_s: float) -> AsyncIterator[LogChunk]:
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    last_error: HacoError | None = None
    turn = 0
    while loop.time() - last_progress < resume_s:
        url = client.urls[(client._current + turn) % len(client.urls)]
        try:
            async for event in _events(client, url, job_id, _params(stream, cur, True)):
                last_progress = loop.time()
                kind = event.get("event")
                if kind == "start":
                    cur.attempt, cur.worker_id = int(event["attempt"]), event.get("worker_id")
                elif kind == "output":
                    chunk = chunk_from_json(event)
                    cur.offset, cur.tail = chunk.end, None
                    yield chunk
                elif kind == "keepalive":
                    cur.offset, cur.tail = int(event.get("next_offset", cur.offset)), None
                elif kind == "end":
                    cur.offset, cur.ended = int(event.get("next_offset", cur.offset)), True
                    cur.exit_code, cur.dropped_bytes = event.get("exit_code"), int(event.get("dropped_bytes") or 0)
                    return
                elif kind == "error":
                    detail = {k: v for k, v in event.items() if k not in ("event", "code", "message")}
                    if event.get("code") == "WORKER_OFFLINE" and not event.get("running"):
                        raise WorkerOffline(str(event.get("message")), detail)
                    last_error = HacoError(str(event.get("message")), detail)
                    break
            else:
                last_error = last_error or Unreachable(f"{url}: the log stream ended early")
        except WorkerOffline as exc:
            if not exc.detail.get("running"):
                raise
            last_error = exc  # a running attempt's worker moves to a new leader: it comes back
        except NotStarted as exc:
            last_error, last_progress = exc, loop.time()  # waits for the attempt to start, however long
            await asyncio.sleep(1.0)
        except (NotApplied, OutcomeUnknown, Unreachable) as exc:
            last_error = exc
            turn += 1
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            last_error = Unreachable(f"{url}: {type(exc).__name__}")
            turn += 1
        log.debug("log stream interrupted job=%s offset=%d error=%s", job_id, cur.offset, last_error)
        await asyncio.sleep(_RETRY_PAUSE_S)
    raise last_error or Unreachable(f"no log stream for job {job_id} within {resume_s:g}s")


async def _events(client: HacoClient, url: str, job_id: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The NDJSON events of one follow request to `url`. Raises the typed error of a non-200 answer."""
    from haco.client import error_from_body
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=client.config.connect_timeout_s, sock_read=30.0)
    query = {k: str(v) for k, v in params.items()}
    session = client._get_session()
    async with session.get(f"{url}/api/jobs/{job_id}/logs", params=query, timeout=timeout) as resp:
        if resp.status != 200:
            try:
                body: Any = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError):
                body = None
            raise error_from_body(resp.status, body, url=url)
        buf = b""
        async for data in resp.content.iter_any():
            buf += data
            while (nl := buf.find(b"\n")) >= 0:
                line, buf = buf[:nl], buf[nl + 1:]
                if line.strip():
                    yield json.loads(line)
            if len(buf) > STREAM_LINE_BYTES_MAX:
                raise Unreachable(f"{url}: a log stream line is longer than {STREAM_LINE_BYTES_MAX} bytes")


__all__ = ["LogChunk", "LogCursor", "chunk_from_json", "iter_logs"]
