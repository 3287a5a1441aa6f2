"""`GET /api/jobs`: the filters, the sort orders and the keyset cursor behind one page of jobs.

Pure over a list of immutable `Job` records (the route copies `state.jobs.values()` once, off the
loop), so a page is the same whichever thread builds it. Paging is by keyset, not offset: the
cursor names the last row's sort key and sequence number, and the next page starts strictly past
it, so jobs submitted or finished meanwhile never shift a page or show a row twice.

Query parameters (all optional): `status`, `type`, `queue` (a job names none yet: `default`),
`label=K=V` (repeatable, all must match), `q` (case-insensitive text in the job id or key),
`sort` (`created`, `duration`, `worker`, `attempts`; a leading `-` for descending), `order`
(`newest`/`oldest`: `-created`/`created`, kept for callers that page by `after`), `after`
(a sequence number, with the created order), `cursor` (from the previous page), `limit`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from raft_state.records import Job, JobStatus

from haco.errors import Rejected
from haco.wire import job_json, unpack

SORTS: Final = ("created", "duration", "worker", "attempts")
LIMIT_MAX: Final = 1000
Q_CHARS_MAX: Final = 200
PARAMS: Final = ("status", "type", "queue", "label", "group", "q", "sort", "order", "after", "cursor", "limit")
_STATUSES: Final = frozenset(s.value for s in JobStatus)


def _bad(field: str, message: str) -> Rejected:
    return Rejected("BAD_QUERY", message, {"field": field})


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    """One page's filters, order and starting point (`cursor`: the last key of the page before)."""

    status: str | None = None
    type: str | None = None
    queue: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    q: str | None = None
    sort: str = "created"
    descending: bool = False
    cursor: tuple[Any, int] | None = None
    limit: int = 100


def parse(query: Mapping[str, str], labels: Iterable[str]) -> JobQuery:
    """The query from request parameters (`labels`: every `?label=` given); Rejected BAD_QUERY."""
    status = query.get("status") or None
    if status is not None and status not in _STATUSES:
        raise _bad("status", f"?status must be one of {', '.join(sorted(_STATUSES))}")
    sort, descending = _sort(query)
    q = query.get("q") or None
    if q is not None and len(q) > Q_CHARS_MAX:
        raise _bad("q", f"?q takes at most {Q_CHARS_MAX} characters")
    pairs = []
    for text in labels:
        key, eq, value = text.partition("=")
        if not eq or not key:
            raise _bad("label", "?label takes KEY=VALUE")
        pairs.append((key, value))
    return JobQuery(status=status, type=query.get("type") or None, queue=query.get("queue") or None,
                    labels=tuple(pairs), q=q.lower() if q else None, sort=sort, descending=descending,
                    cursor=_start(query, sort), limit=_int(query, "limit", 100, 1, LIMIT_MAX))


def _sort(query: Mapping[str, str]) -> tuple[str, bool]:
    order = query.get("order")
    if order is not None and order not in ("newest", "oldest"):
        raise _bad("order", "?order must be newest or oldest")
    text = query.get("sort")
    if text is None:
        return "created", order == "newest"
    if order is not None:
        raise _bad("order", "give ?sort or ?order, not both")
    name = text.removeprefix("-")
    if name not in SORTS:
        raise _bad("sort", f"?sort must be one of {', '.join(SORTS)}, with a leading - for descending")
    return name, text.startswith("-")


def _start(query: Mapping[str, str], sort: str) -> tuple[Any, int] | None:
    if "after" in query and "cursor" in query:
        raise _bad("cursor", "give ?cursor or ?after, not both")
    if "after" in query:
        if sort != "created":
            raise _bad("after", "?after pages the created order; other sorts page by ?cursor")
        seq = _int(query, "after", 0, 0, 2**62)
        return (seq, seq) if seq else None
    text = query.get("cursor")
    if not text:
        return None
    try:
        name, value, seq = json.loads(base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise _bad("cursor", "?cursor is not one this API gave out") from None
    if name != sort or not isinstance(seq, int) or not isinstance(value, (int, str)):
        raise _bad("cursor", "?cursor belongs to another sort order; start again without it")
    return value, seq


def _int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad(name, f"?{name} must be an integer") from None
    if not lo <= value <= hi:
        raise _bad(name, f"?{name} must be between {lo} and {hi}")
    return value


def encode_cursor(sort: str, value: Any, seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort, value, seq]).encode()).rstrip(b"=").decode()


def started_ms(job: Job) -> int | None:
    """When the job's latest attempt started (or was assigned, before the worker said so)."""
    if not job.attempts:
        return None
    last = job.attempts[-1]
    return last.started_at_ms or last.assigned_at_ms


def duration_ms(job: Job, now_ms: int) -> int | None:
    """The latest attempt's run time: to its end, or to `now_ms` while it runs."""
    start = started_ms(job)
    if start is None:
        return None
    end = job.attempts[-1].ended_at_ms or job.finished_at_ms or now_ms
    return max(0, end - start)


def _key(job: Job, sort: str, now_ms: int) -> Any:
    if sort == "created":
        return job.seq
    if sort == "duration":
        d = duration_ms(job, now_ms)
        return -1 if d is None else d
    if sort == "worker":
        return job.worker_id or ""
    return job.attempt


def _matches(job: Job, f: JobQuery) -> bool:
    if f.status is not None and job.status != f.status:
        return False
    if f.type is not None and job.spec.type != f.type:
        return False
    if f.queue is not None and (getattr(job.spec, "queue", None) or "default") != f.queue:
        return False
    if f.q is not None and f.q not in job.job_id and f.q not in (job.key or "").lower():
        return False
    if f.labels:
        labels = unpack(job.spec.labels) or {}
        return all(labels.get(k) == v for k, v in f.labels)
    return True


def page(jobs: Iterable[Job | None], f: JobQuery, now_ms: int) -> dict[str, Any]:
    """`{"jobs", "total", "next", "cursor"}`: the page's rows (with `started_at_ms` and
    `duration_ms`), how many jobs match in all, and where the next page starts (None: no more;
    `next` is the last row's sequence number, for `?after=`, in the created order only)."""
    picked = [j for j in jobs if j is not None and _matches(j, f)]
    total = len(picked)
    keyed = [((_key(j, f.sort, now_ms), j.seq), j) for j in picked]
    if f.cursor is not None:
        keyed = [kj for kj in keyed if (kj[0] < f.cursor if f.descending else kj[0] > f.cursor)]
    keyed.sort(key=lambda kj: kj[0], reverse=f.descending)
    rows = keyed[:f.limit]
    more = len(keyed) > f.limit
    last = rows[-1][0] if rows and more else None
    return {
        "jobs": [{**job_json(j, full=False), "started_at_ms": started_ms(j), "duration_ms": duration_ms(j, now_ms)}
                 for _, j in rows],
        "total": total,
        "next": last[1] if last is not None and f.sort == "created" else None,
        "cursor": encode_cursor(f.sort, last[0], last[1]) if last is not None else None,
    }
