"""Cluster health verdicts: healthy, degraded or unhealthy, each problem named with what it risks.

Pure functions over the replicas' `GET /api/cluster` answers (and the worker list), so that
`GET /api/health/cluster` (haco/server) and `haco status` (haco/cli) reach the same verdict from
the same facts. Imports nothing of haco.

- unhealthy: no replica reachable, no majority reachable, no leader, or two replicas holding
  different digests at the same applied index. Writes stop (or the state is in doubt).
- degraded: the cluster works, but something is wrong that an operator should fix before it gets
  worse: a replica unreachable or cut off from the leader (the text says how many more losses stop
  all writes), a replica lagging the leader's commit index, a replica whose apply is stuck (it
  reports `apply.stuck`, haco/replica/progress.py), snapshots that keep failing, lost workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
LAG_ENTRIES_MAX = 1000  #: a reachable replica further behind the leader's commit index than this is lagging
SNAPSHOT_FAILURES_MAX = 2  #: this many failed snapshot writes in a row is a problem, not bad luck

Info = Mapping[str, Any]


def verdict(replicas: Sequence[Mapping[str, Any]], workers: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The verdict over `replicas`, each {"id": configured id or None, "url", "info": its /api/cluster
    answer or None when unreachable}; `workers` is GET /api/workers' list (None: unknown).

    Returns {"status", "summary", "problems": [{"severity", "what", "risk"}], "size", "reachable",
    "majority", "leader"}; unhealthy problems come first."""
    up = [r for r in replicas if r.get("info") is not None]
    infos = [r["info"] for r in up]
    size = max([len(replicas)] + [len(i.get("peers") or []) + 1 for i in infos])
    majority = size // 2 + 1
    leader = _leader(infos)
    problems: list[dict[str, str]] = []

    def add(severity: str, what: str, risk: str) -> None:
        problems.append({"severity": severity, "what": what, "risk": risk})

    if not up:
        add(UNHEALTHY, "no replica reachable", "nothing can be read or written")
    elif len(up) < majority:
        down = ", ".join(_name(r) for r in replicas if r.get("info") is None)
        add(UNHEALTHY, f"no majority: {len(up)} of {size} replicas reachable" + (f" ({down} down)" if down else ""),
            f"no writes until {majority} of {size} are back")
    if leader is None:
        add(UNHEALTHY, "no leader", "no writes and no scheduling until one is elected")
    digest = digest_check(infos)
    if digest["diverged"]:
        add(UNHEALTHY, f"digest divergence at index {digest['index']}",
            "replicas disagree on the state: stop writes and compare them (docs/operations.md)")
    _replica_problems(replicas, leader, size, majority, add)
    _worker_problems(workers, add)
    problems.sort(key=lambda p: p["severity"] != UNHEALTHY)
    status = problems[0]["severity"] if problems else HEALTHY
    return {"status": status, "summary": summary(status, problems), "problems": problems, "size": size,
            "reachable": len(up), "majority": majority,
            "leader": None if leader is None else leader.get("id")}


def summary(status: str, problems: Sequence[Mapping[str, str]]) -> str:
    """One line: `degraded: replica r3 unreachable; one more loss stops all writes (+1 more)`."""
    if not problems:
        return HEALTHY
    first = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{status}: {first['what']}; {first['risk']}{more}"


def _leader(infos: Sequence[Info]) -> Info | None:
    leaders = sorted((i for i in infos if i.get("role") == "leader"), key=lambda i: -int(i.get("term") or 0))
    return leaders[0] if leaders else None


def _replica_problems(replicas: Sequence[Mapping[str, Any]], leader: Info | None, size: int, majority: int,
                      add: Any) -> None:
    down = [_name(r) for r in replicas if r.get("info") is None]
    answering = {str(r["info"].get("id")) for r in replicas if r.get("info") is not None}
    cut_off = [str(p.get("id")) for p in (leader or {}).get("peers") or []
               if p.get("reachable") is False and str(p.get("id")) in answering]
    spare = size - len(down) - len(cut_off) - majority
    if spare >= 0:  # below that the verdict already says no majority, naming who is down
        risk = "one more loss stops all writes" if spare == 0 else f"writes stop after {spare + 1} more losses"
        for name in down:
            add(DEGRADED, f"replica {name} unreachable", risk)
        for name in cut_off:
            add(DEGRADED, f"replica {name} has no Raft connection to the leader {leader and leader.get('id')}", risk)
    elif cut_off:  # a majority answers HTTP, but not enough of it reaches the leader over Raft
        add(UNHEALTHY, f"no Raft majority: the leader {leader and leader.get('id')} reaches "
                       f"{size - len(down) - len(cut_off)} of {size} replicas ({', '.join(down + cut_off)} not)",
            "writes stop")
    commit = int((leader or {}).get("commit_index") or 0)
    for r in replicas:
        info = r.get("info")
        if info is None:
            continue
        name = _name(r)
        apply = info.get("apply") or {}
        if apply.get("stuck"):
            add(DEGRADED, f"replica {name} stuck: applied index {info.get('applied_index')} has not moved for "
                          f"{float(apply.get('stalled_s') or 0):.0f}s with {apply.get('lag')} committed entries waiting",
                "its reads are stale and it is no spare for the quorum; see its log")
        elif leader is not None and info is not leader and commit - int(info.get("applied_index") or 0) > LAG_ENTRIES_MAX:
            add(DEGRADED, f"replica {name} lagging: {commit - int(info.get('applied_index') or 0)} entries behind "
                          "the leader's commit index", "its reads are stale until it catches up")
        failures = int(info.get("snapshot_failures") or 0)
        if failures >= SNAPSHOT_FAILURES_MAX:
            add(DEGRADED, f"replica {name}: the last {failures} snapshots failed",
                "its journal grows until one succeeds (disk space? see its log)")


def _worker_problems(workers: Sequence[Mapping[str, Any]] | None, add: Any) -> None:
    lost = [w for w in workers or () if w.get("status") == "lost"]
    if lost:
        names = ", ".join(str(w.get("worker_id")) for w in lost)
        slots = sum(int(w.get("capacity") or 0) for w in lost)
        add(DEGRADED, f"worker{'s' if len(lost) > 1 else ''} {names} lost",
            f"{slots} job slots gone; their running jobs went back to the queue "
            "(one gone for good: DELETE /api/workers/ID)")


def _name(replica: Mapping[str, Any]) -> str:
    info = replica.get("info") or {}
    return str(info.get("id") or replica.get("id") or replica.get("url"))


def digest_check(infos: Sequence[Info]) -> dict[str, Any]:
    """Compare the replicas' recent (index, digest) pairs: report the highest index they all hold
    (or, failing that, the highest held by two or more) and whether any shared index differs."""
    held = [held_digests(info) for info in infos]
    diverged_at = [i for i in sorted(set().union(*held)) if len({h[i] for h in held if i in h}) > 1] if held else []
    common = set.intersection(*(set(h) for h in held)) if held else set()
    shared = [i for i in (set().union(*held) if held else set()) if sum(i in h for h in held) >= 2]
    index = max(diverged_at) if diverged_at else max(common) if common else max(shared) if shared else None
    values = sorted({h[index] for h in held if index in h}) if index is not None else []
    return {"index": index, "diverged": bool(diverged_at), "diverged_at": diverged_at[-5:],
            "digests": values, "replicas_compared": sum(index in h for h in held) if index is not None else 0}


def held_digests(info: Info) -> dict[int, str]:
    """A replica's recent (index, digest) pairs, plus its current digest at its applied index."""
    held = {int(i): str(d) for i, d in (info.get("digests") or [])}
    if info.get("digest") and info.get("applied_index") is not None:
        held[int(info["applied_index"])] = str(info["digest"])
    return held


__all__ = ["DEGRADED", "HEALTHY", "UNHEALTHY", "digest_check", "held_digests", "summary", "verdict"]
