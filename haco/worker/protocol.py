"""Worker protocol v1, the worker's side: report outbox, backoff, and one connection.

Frames are encoded and decoded by haco/wire.py, which the replica's side (`haco/server/hub.py`)
uses too. `Outbox` and `Backoff` are plain data: callers pass
`now` (monotonic seconds). `Link` is one websocket session: hello, welcome or redirect, then a
reader that hands assign/cancel/drain to its owner (the agent) and a single writer for every frame.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp

from haco.wire import CONNECT_PATH, FRAME_BYTES_MAX, decode, encode

FINAL_REPORTS: Final = frozenset({"completed", "failed"})
REPORTS_PER_FRAME: Final = 200  #: reports batched in one frame (results are bounded at 64 KiB each)

log = logging.getLogger(__name__)

Attempt = tuple[str, int]  # (job_id, attempt): what every state-changing frame carries


@dataclass(slots=True)
class Report:
    """A started/completed/failed report, kept until the replica answers it for good."""

    rid: str
    kind: str
    job_id: str
    attempt: int
    fields: dict[str, Any]
    due_at: float = 0.0  #: send when now >= due_at
    sent_at: float | None = None  #: first send on the current connection; the stall clock

    def frame(self) -> bytes:
        return encode(self.kind, rid=self.rid, job_id=self.job_id, attempt=self.attempt, **self.fields)

    def item(self) -> dict[str, Any]:
        """This report as one item of a `reports` frame."""
        return {"rid": self.rid, "t": self.kind, "job_id": self.job_id, "attempt": self.attempt, **self.fields}


@dataclass(slots=True)
class Outbox:
    """Unacknowledged reports in the order they were made.

    `ack` with ok true or false removes a report for good; `retry` keeps it and makes it due again
    after `retry_s`; a report sent and not answered is due again after `resend_s`. After a new
    welcome, `reset_connection()` makes every report due at once, oldest first.
    """

    resend_s: float = 5.0
    retry_s: float = 0.2
    _reports: dict[str, Report] = field(default_factory=dict)  # insertion-ordered
    _unsent_started: dict[Attempt, str] = field(default_factory=dict)  #: started reports never sent yet

    def add(self, kind: str, job_id: str, attempt: int, **fields: Any) -> Report:
        """Queue a report. A final report replaces the same attempt's `started` that was not sent
        yet: a job that ends before its start went out costs one log command, not two."""
        report = Report(uuid.uuid4().hex, kind, job_id, attempt, fields)
        if kind in FINAL_REPORTS:
            started = self._unsent_started.pop((job_id, attempt), None)
            if started is not None and started in self._reports and self._reports[started].sent_at is None:
                del self._reports[started]
        elif kind == "started":
            self._unsent_started[(job_id, attempt)] = report.rid
        self._reports[report.rid] = report
        return report

    def due(self, now: float) -> list[Report]:
        return [r for r in self._reports.values() if r.due_at <= now]

    def mark_sent(self, report: Report, now: float) -> None:
        if report.kind == "started":
            self._unsent_started.pop((report.job_id, report.attempt), None)
        report.due_at = now + self.resend_s
        if report.sent_at is None:
            report.sent_at = now

    def ack(self, rid: str) -> Report | None:
        report = self._reports.pop(rid, None)
        if report is not None and report.kind == "started":
            self._unsent_started.pop((report.job_id, report.attempt), None)
        return report

    def retry(self, rid: str, now: float) -> Report | None:
        report = self._reports.get(rid)
        if report is not None:
            report.due_at = min(report.due_at, now + self.retry_s)
        return report

    def reset_connection(self) -> None:
        for report in self._reports.values():
            report.due_at, report.sent_at = 0.0, None

    def next_due(self) -> float | None:
        return min((r.due_at for r in self._reports.values()), default=None)

    def oldest_sent_at(self) -> float | None:
        return min((r.sent_at for r in self._reports.values() if r.sent_at is not None), default=None)

    def attempts(self) -> set[Attempt]:
        return {(r.job_id, r.attempt) for r in self._reports.values()}

    def has_final(self, key: Attempt) -> bool:
        return any((r.job_id, r.attempt) == key and r.kind in FINAL_REPORTS for r in self._reports.values())

    def __len__(self) -> int:
        return len(self._reports)

    def __iter__(self) -> Iterator[Report]:
        return iter(list(self._reports.values()))


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with jitter: the n-th delay is uniform in [d/2, d], d = min(cap, first * 2**n)."""

    first_s: float = 0.1
    cap_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random)
    _n: int = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.first_s * 2 ** min(self._n, 30))
        self._n += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._n = 0


# ---- one connection to a replica ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSettings:
    token: str | None = None
    heartbeat_s: float = 1.0  #: until a welcome says otherwise
    stall_s: float = 8.0
    connect_timeout_s: float = 5.0
    welcome_timeout_s: float = 15.0
    ping_s: float = 5.0  #: websocket ping; a replica that stops answering is dropped after this
    close_timeout_s: float = 2.0


@dataclass(slots=True)
class SessionEnd:
    """How a connection ended: welcomed (the backoff resets) and where a redirect pointed."""

    welcomed: bool = False
    leader_url: str | None = None


class LinkOwner(Protocol):
    """What a Link needs from the agent; every method is called on the loop and must not block."""

    settings: LinkSettings
    outbox: Outbox
    kick: asyncio.Event  #: set when a report or a control frame waits to be sent

    def hello(self) -> bytes: ...
    def heartbeat(self) -> bytes: ...
    def wants_draining(self) -> bool: ...
    def wants_bye(self) -> bool: ...
    def on_assign(self, body: dict[str, Any]) -> None: ...
    def on_cancel(self, body: dict[str, Any]) -> None: ...
    def on_drain(self) -> None: ...
    def on_undrain(self) -> None: ...
    def on_settled(self) -> None: ...
    def on_bye_done(self) -> None: ...
    def take_progress(self) -> bytes | None: ...
    async def answer_log(self, body: dict[str, Any]) -> bytes: ...


class Link:
    """One websocket session with a replica: hello, then a reader and a single writer.

    The writer owns every send (heartbeats, control frames, due reports), so frames never interleave.
    `session()` never raises for network trouble; it returns how the session ended.
    """

    def __init__(self, owner: LinkOwner, ws: aiohttp.ClientWebSocketResponse, url: str, heartbeat_s: float) -> None:
        self.owner, self.ws, self.url, self.heartbeat_s = owner, ws, url, heartbeat_s
        self.progress_at = time.monotonic()  # welcome, then every report answered for good
        self.sent_draining = self.bye_sent = False
        self.end = SessionEnd(welcomed=True)
        self.batch = False  #: the welcome said the replica takes `reports` frames
        self._log_reads: set[asyncio.Task[None]] = set()  #: answers being prepared; they die with the session

    @classmethod
    async def session(cls, owner: LinkOwner, http: aiohttp.ClientSession, url: str) -> SessionEnd:
        s = owner.settings
        headers = {"Authorization": f"Bearer {s.token}"} if s.token else {}
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                ws = await http.ws_connect(url + CONNECT_PATH, headers=headers, heartbeat=s.ping_s,
                                           max_msg_size=FRAME_BYTES_MAX,
                                           timeout=aiohttp.ClientWSTimeout(ws_close=s.close_timeout_s))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("connect failed url=%s error=%s", url, _describe(exc))
            return SessionEnd()
        link: Link | None = None
        try:
            await ws.send_bytes(owner.hello())
            first = await _first_frame(ws, s.welcome_timeout_s)
            kind = first.get("t") if first else None
            if kind == "redirect":
                leader = first.get("leader_url") if first else None
                log.info("replica is not the leader url=%s leader=%s", url, leader)
                return SessionEnd(leader_url=leader if isinstance(leader, str) and leader else None)
            if kind != "welcome" or first is None:
                log.warning("no welcome url=%s frame=%s", url, _summary(first))
                return SessionEnd()
            log.info("connected url=%s heartbeat_s=%s unacked=%d", url, first.get("heartbeat_s"), len(owner.outbox))
            link = cls(owner, ws, url, float(first.get("heartbeat_s") or s.heartbeat_s))
            link.batch = first.get("batch") is True
            if first.get("draining") is True:  # the replicated status, as this leader knows it
                owner.on_drain()
            elif first.get("draining") is False:  # undrained while we talked to another leader
                owner.on_undrain()
            await link._serve()
            return link.end
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("connection lost url=%s error=%s", url, _describe(exc))
            return link.end if link is not None else SessionEnd()
        finally:
            await ws.close()
            if link is not None:
                log.info("disconnected url=%s code=%s", url, ws.close_code)
                if link.bye_sent:
                    owner.on_bye_done()

    async def _serve(self) -> None:
        self.owner.outbox.reset_connection()
        tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks += self._log_reads
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # a bug re-raises; network trouble was handled inside

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                body = decode(msg.data)
                if body is None:
                    log.warning("undecodable frame ignored url=%s bytes=%d", self.url, len(msg.data))
                else:
                    await self._on_frame(body)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                log.info("websocket error url=%s error=%s", self.url, msg.data)
                return

    async def _on_frame(self, body: dict[str, Any]) -> None:
        match body["t"]:
            case "assign":
                self.owner.on_assign(body)
            case "assigns":
                for item in _items(body):
                    self.owner.on_assign(item)
            case "acks":
                for item in _items(body):
                    self._on_ack(item)
            case "cancel":
                self.owner.on_cancel(body)
            case "ack":
                self._on_ack(body)
            case "drain":
                self.owner.on_drain()
            case "undrain":
                self.owner.on_undrain()
            case "log_read":
                task = asyncio.create_task(self._answer_log(body))
                self._log_reads.add(task)
                task.add_done_callback(self._log_reads.discard)
            case "redirect":  # leadership moved while we were connected
                leader = body.get("leader_url")
                self.end.leader_url = leader if isinstance(leader, str) and leader else None
                await self.ws.close()
            case "welcome" | "pong":
                pass
            case other:
                log.info("frame ignored url=%s type=%s body=%s", self.url, other, _summary(body))

    async def _answer_log(self, body: dict[str, Any]) -> None:
        data = await self.owner.answer_log(body)
        await self._send(data)

    def _on_ack(self, body: dict[str, Any]) -> None:
        rid, outbox = body.get("rid"), self.owner.outbox
        if not isinstance(rid, str):
            return
        if body.get("retry"):
            if outbox.retry(rid, time.monotonic()) is not None:
                log.debug("report not committed, will resend rid=%s", rid)
                self.owner.kick.set()
            return
        report = outbox.ack(rid)
        if report is None:
            return  # the answer to a resend of something already answered
        self.progress_at = time.monotonic()
        if body.get("ok"):
            log.debug("report committed kind=%s job=%s attempt=%d", report.kind, report.job_id, report.attempt)
        else:
            log.warning("report refused kind=%s job=%s attempt=%d code=%s message=%s", report.kind,
                        report.job_id, report.attempt, body.get("code"), body.get("message"))
        self.owner.on_settled()

    async def _write(self) -> None:
        owner, next_heartbeat = self.owner, 0.0
        while True:
            owner.kick.clear()
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_s
                if not await self._send(owner.heartbeat()):
                    return
            if owner.wants_draining() and not self.sent_draining:
                if not await self._send(encode("draining")):
                    return
                self.sent_draining = True
            if not await self._send_reports(owner.outbox.due(now), now):
                return
            progress = owner.take_progress()
            if progress is not None and not await self._send(progress):
                return
            if owner.wants_bye() and not self.bye_sent:
                self.bye_sent = await self._send(encode("bye"))
                log.info("said bye url=%s unacked=%d", self.url, len(owner.outbox))
            if self._stalled(time.monotonic()):
                log.warning("reports not committing, moving on url=%s unacked=%d", self.url, len(owner.outbox))
                await self.ws.close()
                return
            due = owner.outbox.next_due()
            wake = next_heartbeat if due is None else min(next_heartbeat, due)
            try:
                await asyncio.wait_for(owner.kick.wait(), max(0.0, wake - time.monotonic()))
            except TimeoutError:
                pass

    async def _send_reports(self, due: list[Report], now: float) -> bool:
        """Send due reports: in `reports` frames of up to REPORTS_PER_FRAME when the replica takes
        them, else one frame each. False when the connection failed."""
        step = REPORTS_PER_FRAME if self.batch else 1
        for start in range(0, len(due), step):
            chunk = due[start:start + step]
            data = encode("reports", items=[r.item() for r in chunk]) if self.batch else chunk[0].frame()
            if not await self._send(data):
                return False
            for report in chunk:
                self.owner.outbox.mark_sent(report, now)
        return True

    def _stalled(self, now: float) -> bool:
        oldest = self.owner.outbox.oldest_sent_at()
        return oldest is not None and now - max(oldest, self.progress_at) > self.owner.settings.stall_s

    async def _send(self, data: bytes) -> bool:
        try:
            async with asyncio.timeout(self.owner.settings.stall_s):
                await self.ws.send_bytes(data)
        except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            log.info("send failed url=%s error=%s", self.url, _describe(exc))
            await self.ws.close()
            return False
        return True


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


async def _first_frame(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> dict[str, Any] | None:
    """The replica's answer to hello, skipping control messages; None if it closed first."""
    async with asyncio.timeout(timeout_s):
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                return decode(msg.data)
            if msg.type is aiohttp.WSMsgType.ERROR:
                return None
    return None


def _summary(body: dict[str, Any] | None) -> str:
    return repr(body)[:200]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
