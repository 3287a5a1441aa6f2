"""A lean HTTP/1.1 load generator for `haco bench`'s submit rate.

The bench runs on the same cores as the cluster it measures, and aiohttp's client spent ~155 us of
CPU per request (about as much as the leader's whole event loop), so at a few thousand submits/s
the load generator took a third of a 2-core machine from the replicas. This one keeps one
keep-alive connection per client and writes each request as prepared bytes: the requests the
server sees are the same (POST /api/jobs or /api/jobs/batch, JSON, a fresh idempotency key per
job), and every answer is read and checked (2xx with the job ids, or an error counted by code).

No retries: an error answer is counted and the next request carries new keys; a lost connection
is re-dialled to the next URL. Loopback/plain HTTP only (no TLS, no tokens): the bench's throwaway
clusters and `--coordinators` URLs of an open API.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request outstanding."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(_HEAD_END)
        if end < 0:
            return
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length < 0:
            waiter.set_exception(ConnectionError("answer without Content-Length"))
            self.close()
            return
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        waiter.set_result((int(lines[0].split(" ", 2)[1]), body))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True


def _job_prefix(job: dict[str, Any]) -> bytes:
    """The job's JSON without its closing brace, so that `,"key":"..."}` completes it."""
    text = json.dumps({k: v for k, v in job.items() if k != "key"}, separators=(",", ":"))
    return (text[:-1] + ("," if len(text) > 2 else "")).encode()


class SubmitLoad:
    """Closed-loop submitters against `targets` (each an ordered URL list); counts what was acknowledged."""

    def __init__(self, targets: Sequence[Sequence[str]], job: dict[str, Any], *, batch: int) -> None:
        self.targets = [[urlsplit(u) for u in t] for t in targets]
        self.batch = batch
        self.path = "/api/jobs" if batch == 1 else "/api/jobs/batch"
        self.prefix = _job_prefix(job)
        self.run_id = os.urandom(6).hex()
        self.serial = 0
        self.acked = self.total = self.errors = 0
        self.error_codes: dict[str, int] = {}
        self.connections: list[_Connection] = []

    def _body(self) -> bytes:
        keys = range(self.serial, self.serial + self.batch)
        self.serial += self.batch
        jobs = [b'%s"key":"%s-%d"}' % (self.prefix, self.run_id.encode(), k) for k in keys]
        return jobs[0] if self.batch == 1 else b'{"jobs":[' + b",".join(jobs) + b"]}"

    def _error(self, code: str) -> None:
        self.errors += 1
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    async def submitter(self, index: int, counting: Callable[[], bool], until: float) -> None:
        loop = asyncio.get_running_loop()
        urls = self.targets[index % len(self.targets)]
        turn = 0
        conn: _Connection | None = None
        while loop.time() < until:
            url = urls[turn % len(urls)]
            if conn is None or conn.closed:
                try:
                    _, conn = await loop.create_connection(_Connection, url.hostname or "", url.port or 80)
                except OSError as exc:
                    self._error(type(exc).__name__)
                    turn += 1
                    await asyncio.sleep(0.05)
                    continue
                self.connections.append(conn)
            body = self._body()
            head = (f"POST {self.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            try:
                status, answer = await conn.exchange(head + body)
            except (OSError, ConnectionError) as exc:
                self._error(type(exc).__name__)
                conn.close()
                turn += 1
                continue
            if status in (200, 201):
                if not self._acknowledges(answer):
                    self._error("BAD_ANSWER")
                    continue
                self.total += self.batch
                if counting():
                    self.acked += self.batch
                continue
            try:
                code = str(json.loads(answer)["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = f"HTTP {status}"
            self._error(code)
            await asyncio.sleep(0.05)

    def _acknowledges(self, answer: bytes) -> bool:
        try:
            value = json.loads(answer)
            return bool(value["job_id"]) if self.batch == 1 else len(value["job_ids"]) == self.batch
        except (ValueError, KeyError, TypeError):
            return False

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
