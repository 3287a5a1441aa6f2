"""Workflows in one entry (SubmitFlow), reruns (RetryJobs), and what a group's jobs add up to.

Runs inside `State.apply` (tick thread, deterministic, never raising). `plan_batch` is also the
API's pre-check, so a bad workflow gets the very refusal apply would give, before any proposal.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from . import flows, queues
from . import transitions as tr
from .commands import SUBMIT_BATCH_MAX, NewJob
from .flow_commands import RETRY_BATCH_MAX, FlowJob, RetryJobs, SubmitFlow
from .flow_records import Group
from .outcomes import Accepted, Outcome, Rejected, RejectCode
from .records import FINAL_STATUSES, Job, JobSpec, JobStatus
from .validate import ID_CHARS_MAX, spec_problem
from .digest import spec_digest

if TYPE_CHECKING:
    from .state import State

NAME_CHARS_MAX: Final = 128
RETRYABLE: Final = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})


def _batch_hash(items: Sequence[FlowJob]) -> bytes:
    """Identity of a batch without its minted ids: names, keys, delays and specs (deps as given)."""
    h = hashlib.blake2b(digest_size=16)
    for item in items:
        h.update(repr((item.name, item.key, item.not_before_ms)).encode())
        h.update(spec_digest(item.spec))
    return h.digest()


def job_spec_hash(spec: JobSpec, not_before_ms: int) -> bytes:
    """The spec identity for idempotency keys: a delay is part of it; no delay hashes as before."""
    base = spec_digest(spec)
    if not not_before_ms:
        return base
    return hashlib.blake2b(base + not_before_ms.to_bytes(8, "big", signed=True), digest_size=16).digest()


def plan_batch(s: State, items: Sequence[FlowJob]) -> tuple[list[int], list[JobSpec]] | Rejected:
    """Check a workflow batch against `s`: the creation order (dependencies first) and each item's
    spec with names resolved to job ids, or the refusal naming the first problem (a duplicate
    name, an unknown dependency, a cycle)."""
    if not 1 <= len(items) <= SUBMIT_BATCH_MAX:
        return Rejected(RejectCode.INVALID, f"a batch holds 1 to {SUBMIT_BATCH_MAX} jobs")
    by_name: dict[str, int] = {}
    ids: set[str] = set()
    for index, item in enumerate(items):
        where = {"index": index, "name": item.name}
        problem = spec_problem(item.spec)
        if problem is not None:
            return Rejected(RejectCode.INVALID, f"job {item.name or index}: {problem}", where)
        if len(item.name) > NAME_CHARS_MAX:
            return Rejected(RejectCode.INVALID, f"job {index}: a name has at most {NAME_CHARS_MAX} characters", where)
        if item.name:
            if item.name in by_name:
                return Rejected(RejectCode.INVALID, f"duplicate name {item.name!r} in the batch",
                                {**where, "field": "name"})
            by_name[item.name] = index
        if not 1 <= len(item.job_id) <= ID_CHARS_MAX or item.job_id in ids or item.job_id in s.jobs:
            return Rejected(RejectCode.DUPLICATE_JOB_ID, f"job {index}: job id {item.job_id!r} is taken or bad", where)
        ids.add(item.job_id)
        if item.not_before_ms < 0:
            return Rejected(RejectCode.INVALID, f"job {item.name or index}: not_before before 1970", where)
        if item.key is not None and len(items) > 1:
            return Rejected(RejectCode.INVALID, "idempotency keys are for single jobs; a workflow's group id is its key",
                            {**where, "field": "key"})
    edges: list[list[int]] = [[] for _ in items]  # index -> the batch jobs it depends on
    specs: list[JobSpec] = []
    for index, item in enumerate(items):
        resolved: list[str] = []
        for dep in item.spec.depends_on:
            at = by_name.get(dep)
            if at is not None:
                if at == index:
                    return Rejected(RejectCode.DEPENDENCY_CYCLE, f"dependency cycle: {dep} -> {dep}",
                                    {"cycle": [dep, dep], "index": index})
                edges[index].append(at)
                resolved.append(items[at].job_id)
            elif dep in s.jobs:
                resolved.append(dep)
            else:
                return Rejected(RejectCode.UNKNOWN_DEPENDENCY,
                                f"job {item.name or index}: depends on {dep!r}, neither a name in the batch nor a job",
                                {"index": index, "dependency": dep})
        specs.append(item.spec if tuple(resolved) == item.spec.depends_on else
                     item.spec.evolve(depends_on=tuple(resolved)))
    order = _topological(edges)
    if isinstance(order, list):
        return order, specs
    cycle = [items[i].name or str(i) for i in order[1]]
    return Rejected(RejectCode.DEPENDENCY_CYCLE, "dependency cycle: " + " -> ".join(cycle), {"cycle": cycle})


def _topological(edges: list[list[int]]) -> list[int] | tuple[None, list[int]]:
    """Kahn's order, lowest index first among the ready; or (None, a cycle as a closed path)."""
    n = len(edges)
    waiting = [len(set(e)) for e in edges]
    users: list[list[int]] = [[] for _ in range(n)]
    for i, deps in enumerate(edges):
        for d in set(deps):
            users[d].append(i)
    ready = [i for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == n:
        return order
    # walk dependencies from a job left over until one repeats: that stretch is a cycle
    left = [i for i in range(n) if waiting[i] > 0]
    path: list[int] = []
    seen: dict[int, int] = {}
    i = left[0]
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = min(d for d in edges[i] if waiting[d] > 0)
    return None, [*path[seen[i]:], i]


def submit_flow(s: State, cmd: SubmitFlow) -> Outcome:
    if len(cmd.group_id) > ID_CHARS_MAX or (not cmd.group_id and len(cmd.jobs) != 1):
        return Rejected(RejectCode.INVALID, f"a group id has 1 to {ID_CHARS_MAX} characters")
    needed = max((item.spec.since_version() for item in cmd.jobs), default=1)
    if s.cluster_version < needed:  # reservations: older replicas cannot decode the entry's specs
        return Rejected(RejectCode.VERSION_GATED, f"reservations need cluster version {needed}")
    batch = _batch_hash(cmd.jobs)
    known = s.flows.groups.get(cmd.group_id) if cmd.group_id else None
    if known is not None:
        if known.batch_hash != batch or known.schedule_id:
            return Rejected(RejectCode.GROUP_EXISTS, f"group {cmd.group_id} exists with other jobs",
                            {"group_id": cmd.group_id})
        return Accepted(_answer(known), already=True)
    if len(cmd.jobs) == 1 and cmd.jobs[0].key is not None:
        item = cmd.jobs[0]
        rec = s.keys.get(item.key)  # type: ignore[arg-type]
        if rec is not None:
            if rec.spec_hash != job_spec_hash(item.spec, item.not_before_ms):
                return Rejected(RejectCode.KEY_REUSED, f"key {item.key!r} was used for another spec",
                                {"index": 0, "job_id": rec.job_id})
            return Accepted({"group_id": cmd.group_id, "job_ids": [rec.job_id], "names": {}}, already=True)
    for index, item in enumerate(cmd.jobs):
        missing = queues.unknown(s, item.spec.queue)
        if missing is not None:
            return Rejected(missing.code, f"job {item.name or index}: {missing.message}",
                            {"index": index, "name": item.name, **(missing.detail or {})})
    planned = plan_batch(s, cmd.jobs)
    if isinstance(planned, Rejected):
        return planned
    create(s, cmd.group_id, cmd.at_ms, cmd.jobs, *planned)
    group = s.flows.groups.get(cmd.group_id)
    if group is None:
        return Accepted({"group_id": "", "job_ids": [cmd.jobs[0].job_id], "names": {}})
    return Accepted(_answer(group))


def create(s: State, group_id: str, at_ms: int, items: Sequence[FlowJob], order: list[int], specs: list[JobSpec],
           *, schedule_id: str = "", slot_ms: int = 0) -> None:
    """Create a planned batch, dependencies first, and its group (none when `group_id` is "")."""
    for i in order:
        item = items[i]
        spec = specs[i]
        h = job_spec_hash(spec, item.not_before_ms)
        tr._create(s, NewJob(item.job_id, item.key, spec), h, at_ms)
        if item.not_before_ms > 0:
            _delay(s, item.job_id, item.not_before_ms)
    if group_id:
        flows.put_group(s, Group(group_id=group_id, seq=s.job_seq, created_at_ms=at_ms,
                                 names=tuple(i.name for i in items), job_ids=tuple(i.job_id for i in items),
                                 batch_hash=_batch_hash(items), schedule_id=schedule_id, slot_ms=slot_ms))


def _delay(s: State, job_id: str, not_before_ms: int) -> None:
    """A new job waits until `not_before_ms`: held where backoffs wait, ended by a Tick."""
    job = s.jobs[job_id]
    if not_before_ms <= s.now_ms:
        return
    s.ready.discard(job_id)
    job = job.evolve(not_before_ms=not_before_ms)
    s._put_job(job)
    if s._unmet.get(job_id, 0) == 0:
        heapq.heappush(s._backoff, (not_before_ms, job.seq, job_id))


def _answer(g: Group) -> dict[str, Any]:
    return {"group_id": g.group_id, "job_ids": list(g.job_ids),
            "names": {n: j for n, j in zip(g.names, g.job_ids) if n}}


# ---- reruns -------------------------------------------------------------------------------

def retry(s: State, cmd: RetryJobs) -> Outcome:
    if not 1 <= len(cmd.job_ids) <= RETRY_BATCH_MAX:
        return Rejected(RejectCode.INVALID, f"a retry names 1 to {RETRY_BATCH_MAX} jobs")
    missing = [j for j in cmd.job_ids if j not in s.jobs]
    if missing:
        return Rejected(RejectCode.UNKNOWN_JOB, f"no job {missing[0]}", {"job_id": missing[0]})
    if s._cascade:  # a failure still spreading would fail a dependent we are about to revive
        return Rejected(RejectCode.TOO_EARLY, "a dependency failure is still being applied; retry in a second")
    wanted = list(dict.fromkeys(cmd.job_ids))
    roots = [j for j in wanted if s.jobs[j].status in RETRYABLE]
    revive = _revived(s, roots)
    for job_id in sorted(revive, key=lambda j: s.jobs[j].seq):
        _back_to_pending(s, s.jobs[job_id])
    for job_id in sorted(revive, key=lambda j: s.jobs[j].seq):
        job = s.jobs[job_id]
        if job.status is JobStatus.PENDING and s._unmet.get(job_id, 0) == 0:
            s._enqueue(job)
    skipped = {j: str(s.jobs[j].status) for j in wanted if j not in revive}
    dependents = sorted(set(revive) - set(roots), key=lambda j: s.jobs[j].seq)
    return Accepted({"retried": roots, "dependents": dependents, "unchanged": skipped}, already=not revive)


def _revived(s: State, roots: list[str]) -> set[str]:
    """The roots, and every job that failed only because one of them (or one revived) did not complete."""
    revive = set(roots)
    frontier = list(roots)
    candidates = _candidates(s, roots)
    while frontier:
        x = frontier.pop()
        for d in candidates.get(x, ()):
            if d in revive:
                continue
            job = s.jobs[d]
            if job.status is not JobStatus.FAILED or not (job.error or "").startswith(f"dependency {x} "):
                continue
            revive.add(d)
            frontier.append(d)
    return revive


def _candidates(s: State, roots: list[str]) -> dict[str, list[str]]:
    """dependency -> the final jobs that name it, among the roots' groups (every job when a root has none)."""
    f = s.flows
    groups = {f.group_of.get(r) for r in roots}
    if None in groups:
        pool: list[Job] = list(s.jobs.values())
    else:
        pool = [s.jobs[j] for g in sorted(groups) for j in f.groups[g].job_ids if j in s.jobs]  # type: ignore[arg-type]
    out: dict[str, list[str]] = {}
    for job in pool:
        if job.status in FINAL_STATUSES:
            for dep in job.spec.depends_on:
                out.setdefault(dep, []).append(job.job_id)
    return out


def _back_to_pending(s: State, job: Job) -> None:
    """Pending again, with its attempts (numbering goes on), a fresh retry budget and no deadline."""
    job_id = job.job_id
    stale = s.flows.stale_finished
    if job.finish_seq is not None:
        stale[job_id] = stale.get(job_id, 0) + 1
    flows.bump_rerun(s, job_id)
    job = job.evolve(status=JobStatus.PENDING, failures=0, lost=0, not_before_ms=s.now_ms, worker_id=None,
                     error=None, finished_at_ms=None, finish_seq=None)
    s._put_job(job)
    unmet = 0
    for dep_id in job.spec.depends_on:
        dep = s.jobs.get(dep_id)
        if dep is None or dep.status is JobStatus.COMPLETED:
            continue  # a pruned dependency had completed or failed long ago: nothing to wait for
        if dep.is_final:
            s._cascade.append((job_id, f"dependency {dep_id} {dep.status}"))
        else:
            _add_dependent(s, dep_id, job_id)
        unmet += 1
    if unmet:
        s._unmet[job_id] = unmet


def _add_dependent(s: State, dep_id: str, job_id: str) -> None:
    """Into the dependency's waiting list in submission order, as a snapshot load rebuilds it."""
    waiting = s._dependents.setdefault(dep_id, [])
    jobs = s.jobs
    bisect.insort(waiting, job_id, key=lambda j: jobs[j].seq if j in jobs else -1)


# ---- reads --------------------------------------------------------------------------------

def summary(s: State, g: Group) -> dict[str, Any]:
    """Counts by status, failed jobs with their errors, start and end, and the final state."""
    counts = {str(st): 0 for st in JobStatus}
    counts["pruned"] = 0
    failed: list[dict[str, Any]] = []
    started: list[int] = []
    ended: list[int] = []
    for name, job_id in zip(g.names, g.job_ids):
        job = s.jobs.get(job_id)
        if job is None:
            counts["pruned"] += 1
            continue
        counts[str(job.status)] += 1
        started.extend(a.started_at_ms or a.assigned_at_ms for a in job.attempts[:1])
        if job.finished_at_ms is not None:
            ended.append(job.finished_at_ms)
        if job.status in RETRYABLE:
            failed.append({"job_id": job_id, "name": name, "status": str(job.status), "error": job.error})
    final = all(counts[str(st)] == 0 for st in (JobStatus.PENDING, JobStatus.RUNNING))
    state = "running" if not final else (
        "completed" if counts["completed"] + counts["pruned"] == len(g.job_ids) else "failed")
    return {"group_id": g.group_id, "state": state, "final": final, "total": len(g.job_ids), "counts": counts,
            "failed": failed, "created_at_ms": g.created_at_ms, "started_at_ms": min(started) if started else None,
            "ended_at_ms": max(ended) if final and ended else None, "schedule_id": g.schedule_id or None,
            "slot_ms": g.slot_ms or None, "jobs": _answer(g)["names"], "job_ids": list(g.job_ids)}


def is_final(s: State, group_id: str) -> bool:
    g = s.flows.groups.get(group_id)
    if g is None:
        return True
    for job_id in g.job_ids:
        job = s.jobs.get(job_id)
        if job is not None and not job.is_final:
            return False
    return True
