"""The async client: any replica, failover, idempotent submissions, typed errors.

`HacoClient(urls)` talks to the REST API (docs/design.md, Public interface). Every call has an overall
deadline (`ClientConfig.deadline_s`); within it the client:

- tries the replicas in turn, starting with the last one that answered, and moves on after a
  connection error or a per-request timeout (connect `connect_timeout_s`, total `request_timeout_s`);
- follows a `detail.leader_url` hint from a 503/504 answer;
- retries 503 (nothing applied) after `Retry-After` (capped by `retry_after_max_s`) and 504
  `OUTCOME_UNKNOWN` (maybe applied) with the very same body, so a submission keeps its
  idempotency key and a failover never creates a second job;
- raises the typed exception of the error body for any other 4xx/5xx (`error_from_body`).

When the deadline passes it raises the last retryable error: `Unreachable`, `NotApplied` or
`OutcomeUnknown`. Nothing here prints or configures logging; every await is bounded. While no
replica answers (or replicas answer only 503/504, as without a leader), `ClientConfig.on_wait`
(when set) is told so, with the URLs being tried: the CLI prints it, so a dead cluster is not
silence until the deadline.

The URLs are checked when the client is made (`parse_urls`): http or https, a host, a port in
1..65535; anything else is a ConfigError naming the bad URL.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import random
import uuid
from urllib.parse import quote, urlsplit
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from haco.client import snapshots
from haco.client.queues import QueueCalls
from haco.client.logs import LogChunk, LogCursor, iter_logs
from haco.client.snapshots import SavedSnapshot
from haco.security.tls import client_context
from haco.errors import (
    REJECT_STATUS, BadRequest, ConfigError, Conflict, Forbidden, HacoError, LogUnavailable, NotApplied, NotFound,
    NotStarted, OutcomeUnknown, Overloaded, PayloadTooLarge, Rejected, RejectedBadRequest, RejectedConflict,
    RejectedNotFound, Unauthorized, Unreachable, WorkerOffline,
)

__all__ = ["ClientConfig", "HacoClient", "LogChunk", "LogCursor", "ReplicaStatus", "SubmitResult", "SyncClient",
           "error_from_body", "parse_urls", "FINAL_STATUSES", "BATCH_MAX", "SavedSnapshot"]

log = logging.getLogger(__name__)
T = TypeVar("T")

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
BATCH_MAX = 1000  #: jobs per POST /api/jobs/batch
_RETRYABLE_CONNECTION = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, OSError)
_RETRY_ELSEWHERE = frozenset({"NOT_READY"})  #: a read's ?min_index not reached on that replica yet
_BY_CODE: dict[str, type[HacoError]] = {
    cls.code: cls for cls in (BadRequest, ConfigError, Unauthorized, Forbidden, NotFound, Conflict,
                              PayloadTooLarge, NotApplied, Overloaded, OutcomeUnknown, WorkerOffline,
                              LogUnavailable, NotStarted)
}
_REJECTED_BY_STATUS: dict[int, type[Rejected]] = {400: RejectedBadRequest, 404: RejectedNotFound,
                                                   409: RejectedConflict}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    connect_timeout_s: float = 1.0
    request_timeout_s: float = 5.0  #: one request; a long poll gets wait_s + long_poll_margin_s
    long_poll_margin_s: float = 5.0
    deadline_s: float = 30.0  #: one call, all retries included
    retry_after_max_s: float = 2.0  #: cap on a server's Retry-After
    retry_pause_s: float = 0.1  #: first pause after every replica failed once; doubles up to 1 s
    token: str | None = None  #: sent as `Authorization: Bearer <token>`
    ca_file: str | None = None  #: CA bundle for https replicas
    client_cert: str | None = None  #: PEM certificate (and key) presented when a replica requires mTLS
    client_key: str | None = None
    #: called with one line while no replica answers: after `wait_notice_s`, then every `wait_every_s`
    on_wait: Callable[[str], None] | None = None
    wait_notice_s: float = 1.0
    wait_every_s: float = 10.0


def parse_urls(urls: Iterable[str] | str) -> list[str]:
    """Replica URLs from a list or a comma-separated string, without trailing slashes. Raises
    ConfigError for none at all, or for one that is not http(s)://HOST[:PORT] with a port in 1..65535."""
    if isinstance(urls, str):
        urls = urls.split(",")
    out: list[str] = []
    for raw in urls:
        url = raw.strip().rstrip("/")
        if not url:
            continue
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            raise ConfigError(f"coordinator URL {url!r}: the port must be a number from 1 to 65535",
                              {"url": url}) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            hint = f"; did you mean http://{url}?" if "://" not in url else ""
            raise ConfigError(f"coordinator URL {url!r} is not http://HOST:PORT or https://HOST:PORT{hint}",
                              {"url": url})
        if port == 0 or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ConfigError(f"coordinator URL {url!r}: give only scheme, host and port (1 to 65535)",
                              {"url": url})
        out.append(url)
    if not out:
        raise ConfigError("no coordinator URL given")
    return out


@dataclass(frozen=True, slots=True)
class SubmitResult:
    job_id: str
    index: int
    already: bool = False  #: the key was seen before: this is the job created then


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    url: str
    info: dict[str, Any] | None  #: the replica's GET /api/cluster, None when unreachable
    error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.info is not None


def error_from_body(status: int, body: Any, *, url: str = "") -> HacoError:
    """Turn an error answer back into its exception: a Rejected subclass for state-machine codes
    (so `except NotFound` also catches UNKNOWN_JOB), the matching class for API codes."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        text = str(body)[:200] if body else f"HTTP {status}"
        err = {"code": "", "message": text}
    code = str(err.get("code") or "")
    message = str(err.get("message") or code or f"HTTP {status}")
    raw_detail = err.get("detail")
    detail: dict[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
    if url:
        detail = {**detail, "url": url}
    if code in _BY_CODE and code not in REJECT_STATUS:
        return _BY_CODE[code](message, detail)
    if code in REJECT_STATUS or (code and 400 <= status < 500):
        return _REJECTED_BY_STATUS.get(status, Rejected)(code, message, detail)
    by_status: dict[int, type[HacoError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                             409: Conflict, 413: PayloadTooLarge, 503: NotApplied,
                                             504: OutcomeUnknown}
    return by_status.get(status, HacoError)(message, detail)


def _why_unreachable(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _leader_hint(exc: HacoError, current: str) -> str | None:
    hint = exc.detail.get("leader_url")
    return hint.rstrip("/") if isinstance(hint, str) and hint and hint.rstrip("/") != current else None


def _retry_after(headers: Mapping[str, str], cap_s: float) -> float:
    try:
        value = float(headers.get("Retry-After", "0.2"))
    except ValueError:
        value = 0.2
    return max(0.0, min(value, cap_s))


class HacoClient(QueueCalls):
    """Async client over a list of replica URLs. Use as `async with HacoClient(urls) as c:` or call
    `close()`; the aiohttp session is created on first use, inside the running loop."""

    def __init__(self, urls: Iterable[str] | str, *, config: ClientConfig | None = None, **overrides: Any) -> None:
        self.urls = parse_urls(urls)
        base = config or ClientConfig()
        self.config = ClientConfig(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **overrides})
        self._current = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HacoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else None
            ssl_ctx = client_context(self.config.ca_file, self.config.client_cert, self.config.client_key)
            connector = aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else True, limit=64)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
        return self._session

    # --- transport ------------------------------------------------------------------------------

    async def _send(self, url: str, method: str, path: str, body: Any,
                    params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
                    total_s: float) -> tuple[int, Mapping[str, str], Any]:
        timeout = aiohttp.ClientTimeout(total=total_s, sock_connect=min(self.config.connect_timeout_s, total_s))
        pairs = params.items() if isinstance(params, Mapping) else params or ()  # pairs: a repeated parameter
        query = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in pairs if v is not None]
        async with self._get_session().request(method, url + path, json=body, params=query,
                                               timeout=timeout) as resp:
            if resp.content_type == "application/json":
                payload: Any = await resp.json()
            else:
                payload = await resp.text()
            return resp.status, resp.headers, payload

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
                      timeout_s: float | None = None, deadline_s: float | None = None) -> Any:
        """One API call with failover and retries (see the module docstring). Returns the decoded
        JSON of a 2xx answer; raises HacoError subclasses. `body` is sent unchanged on every retry."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deadline_s if deadline_s is not None else self.config.deadline_s)
        per_request = timeout_s if timeout_s is not None else self.config.request_timeout_s
        last: HacoError | None = None
        hint: str | None = None
        failures = 0
        notice_at = loop.time() + self.config.wait_notice_s
        while (remaining := deadline - loop.time()) > 0:
            url = hint or self.urls[self._current]
            followed, hint = hint is not None, None
            try:
                status, headers, payload = await self._send(url, method, path, body, params,
                                                             min(per_request, remaining))
            except _RETRYABLE_CONNECTION as conn_exc:
                # an attempt the deadline cut short says nothing about the replica: keep the last answer
                cut_short = isinstance(conn_exc, asyncio.TimeoutError) and remaining < per_request
                if last is None or not cut_short:
                    last = Unreachable(f"{url}: {_why_unreachable(conn_exc)}", {"url": url})
                log.debug("replica unreachable url=%s method=%s path=%s error=%r", url, method, path, conn_exc)
                failures += 1
                if not followed:
                    self._current = (self._current + 1) % len(self.urls)
                if failures % len(self.urls) == 0:
                    if self.config.on_wait is not None and loop.time() >= notice_at:
                        notice_at = loop.time() + self.config.wait_every_s
                        why = last.message if last else "-"
                        self.config.on_wait(f"no replica answers yet; trying {', '.join(self.urls)} "
                                            f"(last: {why}; giving up in {max(0.0, remaining):.0f}s)")
                    await self._pause(min(1.0, self.config.retry_pause_s * 2 ** (failures // len(self.urls) - 1)),
                                      deadline)
                continue
            if status < 400:
                if url in self.urls:
                    self._current = self.urls.index(url)
                return payload
            exc = error_from_body(status, payload, url=url)
            if isinstance(exc, Rejected) and exc.reject_code in _RETRY_ELSEWHERE:  # this replica lags: ask another
                last = exc
                self._current = (self._current + 1) % len(self.urls)
                await self._pause(0.05, deadline)
                continue
            if status in (502, 503, 504):
                last = exc if isinstance(exc, (NotApplied, OutcomeUnknown)) else Unreachable(exc.message, exc.detail)
                hint = _leader_hint(exc, url)
                log.debug("retrying status=%d code=%s url=%s hint=%s", status, exc.code, url, hint)
                if status == 503 and hint is None:
                    self._current = (self._current + 1) % len(self.urls)
                if self.config.on_wait is not None and loop.time() >= notice_at:  # answered, but cannot act yet
                    notice_at = loop.time() + self.config.wait_every_s
                    self.config.on_wait(f"{url} answers {status} ({exc.message}); retrying "
                                        f"(giving up in {max(0.0, deadline - loop.time()):.0f}s)")
                pause = _retry_after(headers, self.config.retry_after_max_s) if status == 503 else 0.05
                await self._pause(pause, deadline)
                continue
            raise exc
        if last is None:
            last = Unreachable(f"no answer within {deadline_s or self.config.deadline_s:g}s")
        raise last

    @staticmethod
    async def _pause(seconds: float, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, min(seconds * random.uniform(0.8, 1.2), deadline - loop.time())))

    # --- jobs ------------------------------------------------------------------------------------

    async def submit(self, job: Mapping[str, Any], *, key: str | None = None) -> SubmitResult:
        """Submit one job. The idempotency key (given, the job's own, or a fresh uuid4) goes with
        every retry. Raises RejectedConflict (KEY_REUSED) when the key came with another spec."""
        body = {**job, "key": key or job.get("key") or uuid.uuid4().hex}
        answer = await self.request("POST", "/api/jobs", body=body)
        return SubmitResult(str(answer["job_id"]), int(answer.get("index", 0)), bool(answer.get("already", False)))

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Submit jobs in batches of at most BATCH_MAX, each with its own key; ids in input order."""
        keyed = [{**job, "key": job.get("key") or uuid.uuid4().hex} for job in jobs]
        ids: list[str] = []
        for start in range(0, len(keyed), BATCH_MAX):
            answer = await self.request("POST", "/api/jobs/batch", body={"jobs": keyed[start:start + BATCH_MAX]})
            ids.extend(str(j) for j in answer["job_ids"])
        return ids

    async def get(self, job_id: str, *, min_index: int | None = None, wait_s: float | None = None,
                  consistency: str | None = None) -> dict[str, Any]:
        """The job (with attempts and pending_reason). `wait_s` long-polls until it is final."""
        params = {"min_index": min_index, "wait_s": wait_s, "consistency": consistency}
        timeout = None if wait_s is None else wait_s + self.config.long_poll_margin_s
        answer = await self.request("GET", f"/api/jobs/{job_id}", params=params, timeout_s=timeout,
                                    deadline_s=None if timeout is None else timeout + self.config.deadline_s)
        job: dict[str, Any] = answer["job"]
        job.setdefault("index", answer.get("index"))
        return job

    async def wait(self, job_id: str, timeout_s: float | None = None, *, poll_s: float = 20.0,
                   min_index: int | None = None,
                   on_change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Long-poll until the job is final and return it; `on_change(job)` sees every change of
        status, attempt or kind of pending reason (a long poll answers early only when the job is
        final, so `poll_s` bounds how late a change shows). `min_index` (the submit's index) makes any replica see the job.
        Raises TimeoutError after `timeout_s` (None: wait for ever)."""
        loop = asyncio.get_running_loop()
        end = None if timeout_s is None else loop.time() + timeout_s
        seen: tuple[Any, ...] | None = None
        index = min_index
        while True:
            left = poll_s if end is None else min(poll_s, end - loop.time())
            job = await self.get(job_id, wait_s=max(0.0, round(left, 3)), min_index=index)
            index = job.get("index") or index
            reason = job.get("pending_reason")
            now = (job.get("status"), job.get("attempt"), tuple(sorted(reason)) if isinstance(reason, dict) else None)
            if now != seen:
                seen = now
                if on_change is not None:
                    on_change(job)
            if job.get("status") in FINAL_STATUSES:
                return job
            if end is not None and loop.time() >= end:
                raise TimeoutError(f"job {job_id} is still {job.get('status')} after {timeout_s:g}s")

    async def cancel(self, job_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel a pending or running job; `reason` (at most 1,024 characters kept) becomes its error."""
        body = {"reason": reason} if reason else None
        return dict(await self.request("POST", f"/api/jobs/{job_id}/cancel", body=body))

    def logs(self, job_id: str, *, attempt: int | None = None, stream: str = "both", offset: int = 0,
             tail: int | None = None, follow: bool = False, resume_s: float = 60.0,
             cursor: LogCursor | None = None) -> AsyncIterator[LogChunk]:
        """The output of one attempt (default: the latest) as LogChunks, in order: `stream` is
        stdout, stderr or both; `offset` resumes (a LogChunk's `end`); `tail` starts at the last N
        lines. `follow` streams new output until the attempt ends, surviving failovers (haco/client/logs.py).
        `cursor` (optional) shows the attempt, offset and end as they become known. Raises
        WorkerOffline (detail: worker_id, tail) when the worker that has the log is offline."""
        return iter_logs(self, job_id, attempt=attempt, stream=stream, offset=offset, tail=tail, follow=follow,
                         resume_s=resume_s, cursor=cursor)

    async def jobs(self, status: str | None = None, limit: int = 100, *, group: str | None = None,
                   labels: Mapping[str, str] | None = None, type: str | None = None,
                   order: str = "oldest") -> list[dict[str, Any]]:
        """Up to `limit` jobs, following the server's `next` cursor; only `group`'s, only with `labels`
        (all of them), only of executor `type`; `order` oldest (default) or newest first."""
        page = await self.jobs_page(status, limit, group=group, labels=labels, type=type, order=order)
        return list(page["jobs"])

    async def jobs_page(self, status: str | None = None, limit: int = 100, *, after: int | None = None,
                        group: str | None = None, labels: Mapping[str, str] | None = None,
                        type: str | None = None, order: str = "oldest") -> dict[str, Any]:
        """`{"jobs", "total", "next"}`: up to `limit` jobs from cursor `after` (a `next` of an
        earlier page), `total` of all that match the filters, `next` the cursor of the page after
        (None at the end). Follows the server's cursor for a `limit` above one page (1,000)."""
        out: list[dict[str, Any]] = []
        total: int | None = None
        while True:
            params = [("status", status), ("limit", limit - len(out)), ("after", after), ("group", group),
                      ("type", type), ("order", None if order == "oldest" else order)]
            params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
            page = await self.request("GET", "/api/jobs", params=params)
            out.extend(page.get("jobs", []))
            total = page.get("total") if total is None else total
            after = page.get("next")
            if not after or not page.get("jobs") or len(out) >= limit:
                break
        return {"jobs": out[:limit], "total": total, "next": after}

    # --- workflows, groups, reruns, schedules -------------------------------------------------------

    async def submit_workflow(self, jobs: list[Mapping[str, Any]], *, group: str | None = None) -> dict[str, Any]:
        """A DAG in one request: jobs may carry `name` and name each other in `depends_on`. The
        group id (given, or a fresh one) goes with every retry, so a retried request is recognised.
        Answers {"group_id", "job_ids", "names": {name: id}, "index", "already"}."""
        body = {"jobs": list(jobs), "group": group or f"g-{uuid.uuid4().hex[:16]}"}
        return dict(await self.request("POST", "/api/jobs/batch", body=body))

    async def group(self, group_id: str, *, wait_s: float | None = None, min_index: int | None = None
                    ) -> dict[str, Any]:
        """A group's summary: counts by state, failed jobs, start/end, state; `wait_s` long-polls."""
        timeout = None if wait_s is None else wait_s + self.config.long_poll_margin_s
        answer = await self.request("GET", f"/api/groups/{group_id}", params={"wait_s": wait_s, "min_index": min_index},
                                    timeout_s=timeout,
                                    deadline_s=None if timeout is None else timeout + self.config.deadline_s)
        group: dict[str, Any] = answer["group"]
        group["index"] = answer.get("index")
        return group

    async def groups(self, *, schedule: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        answer = await self.request("GET", "/api/groups", params={"schedule": schedule, "limit": limit})
        return list(answer["groups"])

    async def group_jobs(self, group_id: str, *, labels: Mapping[str, str] | None = None,
                         limit: int = 1000) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("group", group_id), ("limit", str(limit))]
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        answer = await self.request("GET", "/api/jobs", params=params)
        return list(answer["jobs"])

    async def retry(self, job_ids: Iterable[str]) -> dict[str, Any]:
        """Run final failed, cancelled or expired jobs again (their failed dependents follow)."""
        return dict(await self.request("POST", "/api/jobs/retry", body={"job_ids": list(job_ids)}))

    async def retry_group(self, group_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/groups/{group_id}/retry"))

    async def create_schedule(self, schedule: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/schedules", body=dict(schedule)))

    async def schedules(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/api/schedules"))["schedules"])

    async def schedule(self, schedule_id: str, *, runs: int = 20) -> dict[str, Any]:
        return dict((await self.request("GET", f"/api/schedules/{schedule_id}", params={"runs": runs}))["schedule"])

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/schedules/{schedule_id}/pause"))

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/schedules/{schedule_id}/resume"))

    async def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/api/schedules/{schedule_id}"))

    # --- workers, queue, cluster ------------------------------------------------------------------

    async def workers(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/api/workers"))["workers"])

    async def worker(self, worker_id: str) -> dict[str, Any]:
        return dict((await self.request("GET", f"/api/workers/{worker_id}"))["worker"])

    async def drain(self, worker_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/workers/{worker_id}/drain"))

    async def undrain(self, worker_id: str) -> dict[str, Any]:
        """A draining worker takes new work again (needs every replica at code version 4)."""
        return dict(await self.request("POST", f"/api/workers/{worker_id}/undrain"))

    async def remove_worker(self, worker_id: str) -> dict[str, Any]:
        return dict(await self.request("DELETE", f"/api/workers/{worker_id}"))

    async def queue_stats(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/queue/stats"))

    async def pause(self) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/queue/pause"))

    async def resume(self) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/queue/resume"))

    async def query(self, sql: str, *, limit: int | None = None) -> dict[str, Any]:
        """Read-only SQL over the results history: `{"columns", "rows"}`, every row of the result.

        A result of more than `limit` rows (the cluster's default 10,000, at most 100,000) raises
        Rejected with code SQL_RESULT_LIMIT: page with LIMIT and OFFSET in the SQL."""
        body: dict[str, Any] = {"sql": sql} if limit is None else {"sql": sql, "limit": limit}
        return dict(await self.request("POST", "/api/results/query", body=body))

    async def members(self) -> dict[str, Any]:
        """The leader's view of the configuration (`haco operator members`): a follower's view when no
        leader answers."""
        view = dict(await self.request("GET", "/api/members"))
        leader_url = view.get("leader_url")
        if leader_url and not any(m.get("self") and m.get("api_url") == leader_url for m in view["members"]):
            try:
                status, _, payload = await self._send(str(leader_url).rstrip("/"), "GET", "/api/members", None,
                                                      None, self.config.request_timeout_s)
                if status == 200:
                    return dict(payload)
            except _RETRYABLE_CONNECTION:
                pass
        return view

    async def add_replica(self, replica_id: str, raft_addr: str, api_url: str, *,
                          catch_up_s: float = 30.0) -> dict[str, Any]:
        """Add a replica (learner, catch-up, voter) through the leader; raises Conflict when refused."""
        body = {"id": replica_id, "raft_addr": raft_addr, "api_url": api_url, "catch_up_s": catch_up_s}
        return dict(await self.request("POST", "/api/members", body=body, timeout_s=catch_up_s + 30,
                                       deadline_s=max(self.config.deadline_s, catch_up_s + 60)))

    async def remove_replica(self, replica_id: str) -> dict[str, Any]:
        """Remove a replica through the leader (the leader itself hands over first)."""
        return dict(await self.request("DELETE", f"/api/members/{replica_id}", timeout_s=30))
    async def save_snapshot(self, path: str) -> SavedSnapshot:
        """Stream a replica's latest snapshot into `path`, atomically (admin; haco/client/snapshots.py)."""
        return await snapshots.save_snapshot(self, path)

    async def compact(self, url: str, *, timeout_s: float = 150.0) -> dict[str, Any]:
        """Have exactly this replica take a snapshot now (admin): `{"snapshot_index", "seconds", ...}`."""
        return await snapshots.compact(self, url, timeout_s=timeout_s)

    async def cluster(self, url: str, *, timeout_s: float = 3.0) -> dict[str, Any]:
        """GET /api/cluster from exactly this replica, once: raises Unreachable or its error."""
        url = url.rstrip("/")
        try:
            status, _, payload = await self._send(url, "GET", "/api/cluster", None, None, timeout_s)
        except _RETRYABLE_CONNECTION as exc:
            raise Unreachable(f"{url}: {_why_unreachable(exc)}", {"url": url}) from None
        if status >= 400:
            raise error_from_body(status, payload, url=url)
        return dict(payload)

    async def status(self, *, timeout_s: float = 3.0) -> list[ReplicaStatus]:
        """GET /api/cluster from every replica concurrently, in `urls` order; never raises for a
        replica that does not answer (its ReplicaStatus carries the error)."""
        async def one(url: str) -> ReplicaStatus:
            try:
                return ReplicaStatus(url, await self.cluster(url, timeout_s=timeout_s))
            except HacoError as exc:
                return ReplicaStatus(url, None, exc.message)
        return list(await asyncio.gather(*(one(u) for u in self.urls)))

    async def health(self, url: str, *, ready: bool = False, timeout_s: float = 2.0) -> bool:
        """True when this replica answers /api/health (or /api/health/ready) with 200."""
        try:
            status, _, _ = await self._send(url.rstrip("/"), "GET", "/api/health/ready" if ready else "/api/health",
                                            None, None, timeout_s)
        except _RETRYABLE_CONNECTION:
            return False
        return status == 200


class SyncClient:
    """Blocking wrapper for scripts: a HacoClient on its own event loop in a daemon thread.

    Every public method of HacoClient is here with the same signature and errors, made blocking
    (generated below from HacoClient, so the two cannot drift); a method that returns an async
    iterator (`logs`) returns a plain iterator. Call `close()` (or use `with`) when done. Do not
    call it from inside a running event loop's thread with a server on that loop: it blocks."""

    def __init__(self, urls: Iterable[str] | str, **overrides: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="haco-client", daemon=True)
        self._thread.start()
        self._client = HacoClient(urls, **overrides)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, it: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(it.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._run(self._client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()


def _blocking(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):
        def call(self: SyncClient, *args: Any, **kwargs: Any) -> Any:
            return self._run(getattr(self._client, name)(*args, **kwargs))
    else:  # returns an async iterator
        def call(self: SyncClient, *args: Any, **kwargs: Any) -> Any:
            return self._iterate(getattr(self._client, name)(*args, **kwargs))
    call.__name__, call.__qualname__, call.__doc__ = name, f"SyncClient.{name}", method.__doc__
    call.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return call


def _returns_async_iterator(method: Callable[..., Any]) -> bool:
    return str(inspect.signature(method).return_annotation).startswith("AsyncIterator")


for _name, _method in inspect.getmembers(HacoClient, inspect.isfunction):
    if not _name.startswith("_") and _name != "close" and (
            inspect.iscoroutinefunction(_method) or _returns_async_iterator(_method)):
        setattr(SyncClient, _name, _blocking(_name, _method))
