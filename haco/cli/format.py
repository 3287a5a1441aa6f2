"""What the `haco` command shows: plain aligned tables, job and cluster reports, health verdicts.

Pure functions from API answers (dicts) to strings or report dicts; no I/O, so tests call them
directly. `cluster_report` decides `haco status`'s verdict (leader, majority, digest divergence).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from haco.cli import job_output
from haco.client import ReplicaStatus
from haco.health import HEALTHY, digest_check, held_digests, verdict

FINAL = ("completed", "failed", "cancelled", "expired")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None shows as '-'."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def ago(ms: int | None, now_ms: int | None = None) -> str | None:
    """'3s ago' style age of an epoch-ms time; None when unknown."""
    if not ms:
        return None
    return duration((now_ms if now_ms is not None else int(time.time() * 1000)) - ms, suffix=" ago")


def duration(ms: float, suffix: str = "") -> str:
    s = max(0.0, ms / 1000)
    if s < 60:
        return f"{s:.1f}s{suffix}" if s < 10 else f"{s:.0f}s{suffix}"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s{suffix}"
    return f"{s // 3600:.0f}h{s % 3600 // 60:02.0f}m{suffix}"


# --- jobs and workers ---------------------------------------------------------------------------

def jobs_table(jobs: Sequence[dict[str, Any]]) -> str:
    return table(["JOB", "STATUS", "TYPE", "PRIORITY", "ATTEMPT", "WORKER", "CREATED"],
                 [(j.get("job_id"), j.get("status"), j.get("type"), j.get("priority"), j.get("attempt"),
                   j.get("worker_id") or j.get("last_worker_id"), ago(j.get("created_at_ms"))) for j in jobs])


def jobs_footer(page: dict[str, Any], *, oldest: bool = False) -> str:
    """`\n50 of 1,029 shown (newest first); older: --after 979, or a larger --limit` when more jobs
    follow this page; "" on the last page."""
    if page.get("next") is None:
        return ""
    shown, total = len(page.get("jobs") or ()), page.get("total")
    counted = f"{shown:,} of {total:,} shown" if isinstance(total, int) else f"{shown:,} shown"
    return (f"\n{counted} ({'oldest' if oldest else 'newest'} first); {'newer' if oldest else 'older'}: "
            f"--after {page['next']}, or a larger --limit")


def job_report(job: dict[str, Any]) -> str:
    """`haco job ID`: fields, why it is pending, attempts, result or error."""
    fields = [("job", job.get("job_id")), ("status", job.get("status")), ("type", job.get("type")),
              ("key", job.get("key")), ("priority", job.get("priority")), ("queue", job.get("queue")),
              ("attempt", job.get("attempt")),
              ("worker", job.get("worker_id")), ("progress", progress_text(job.get("progress"))),
              ("created", ago(job.get("created_at_ms"))),
              ("finished", ago(job.get("finished_at_ms"))), ("payload", job.get("payload")),
              ("depends on", job.get("depends_on") or None), ("tags", job.get("required_tags") or None),
              ("requirements", job.get("requirements") or None), ("labels", job.get("labels") or None),
              ("deadline", job.get("deadline") or job.get("deadline_ms"))]
    width = max(len(k) for k, _ in fields) + 1
    lines = [f"{(k + ':').ljust(width)} {_cell(v)}" for k, v in fields if v is not None]
    if job.get("status") == "pending":
        lines += ["", "pending because:"] + [f"  {line}" for line in pending_reasons(job.get("pending_reason"))]
    attempts = job.get("attempts") or []
    if attempts:
        lines += ["", table(["ATTEMPT", "WORKER", "OUTCOME", "STARTED", "DURATION", "ERROR"],
                            [(a.get("attempt"), a.get("worker_id"), a.get("outcome") or "running",
                              ago(a.get("started_at_ms") or a.get("assigned_at_ms")), _took(a),
                              _short(a.get("error"))) for a in attempts])]
    lines += job_output.report_sections(job)
    if job.get("error"):
        lines += ["", f"error: {_cell(job['error'])}"]
    return "\n".join(lines)


def progress_text(progress: Any) -> str | None:
    """`42% compiling` for a running job's progress (GET /api/jobs/{id}: `progress`), else None."""
    if not isinstance(progress, dict) or not isinstance(progress.get("fraction"), (int, float)):
        return None
    message = progress.get("message") or ""
    return f"{progress['fraction'] * 100:.0f}% {message}".rstrip()


def pending_reasons(reason: Any) -> list[str]:
    """Human lines for a job's `pending_reason` object (raft_state.queries.why_pending)."""
    if not reason:
        return ["unknown (the replica gave no reason)"]
    if not isinstance(reason, dict):
        return [str(reason)]
    lines: list[str] = []
    for key, value in reason.items():
        if key == "paused":
            lines.append("all scheduling is paused (haco resume)")
        elif key == "queue_paused":
            lines.append(f"its queue {value} is paused (haco queue resume {value})")
        elif key == "queue_full":
            lines.append(f"{value} (haco queue update --max-running)")
        elif key == "waiting_on":
            lines.append(f"waiting for dependencies: {_cell(value)}")
        elif key == "not_before_ms":
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value / 1000))
            lines.append(f"not before {when} (in {duration(value - time.time() * 1000)})")
        elif key == "backoff_until_ms":
            lines.append(f"backing off before a retry, for {duration(value - time.time() * 1000)}")
        elif key in ("no_worker_fits", "unfit_workers") and isinstance(value, dict):
            lines.append("no worker fits:" if key == "no_worker_fits" else "workers that do not fit:")
            lines += [f"  {w}: {_cell(why)}" for w, why in value.items()]
        else:
            lines.append(f"{key.replace('_', ' ')}: {_cell(value)}")
    return lines


GLOBAL_PAUSED = "scheduling paused: no queue starts jobs (running jobs go on)"
GLOBAL_RESUMED = "scheduling resumed (queues paused on their own stay paused)"


def queues_table(answer: dict[str, Any]) -> str:
    """`haco queue list`: one row per queue (GET /api/queues), MAX `-` for no limit; DONE is
    completed jobs, FAILED failed ones; a line first when all scheduling is paused."""
    def row(q: dict[str, Any]) -> tuple[Any, ...]:
        counts = q.get("counts") or {}
        return (q.get("name"), q.get("paused"), q.get("max_running") or None, q.get("weight"), q.get("priority"),
                counts.get("pending", 0), q.get("ready"), counts.get("running", 0), counts.get("completed", 0),
                counts.get("failed", 0))
    queues = [*(answer.get("queues") or []), *([answer["other"]] if answer.get("other") else [])]
    text = table(["NAME", "PAUSED", "MAX", "WEIGHT", "PRIO", "PENDING", "READY", "RUNNING", "DONE", "FAILED"],
                 [row(q) for q in queues])
    return f"all scheduling is paused (haco queue resume)\n\n{text}" if answer.get("paused") else text


def workers_table(workers: Sequence[dict[str, Any]], *, wide: bool = False) -> str:
    """`haco workers`: JOBS, CPU, MEM and GPU read reserved/total, as Nomad's allocated/total (a
    worker without GPUs shows '-'); CONNECTED and LOAD are the leader's view (`unknown` when the
    answering replica could not reach the leader). `wide` adds tags, hardware and device models."""
    headers = ["WORKER", "STATUS", "JOBS", "CPU", "MEM", "GPU", "CONNECTED", "LOAD"]
    rows = []
    for w in workers:
        row: list[Any] = [w.get("worker_id"), w.get("status"), f"{len(w.get('running') or [])}/{w.get('capacity', '?')}",
                          *share_texts(w), "unknown" if w.get("connected") is None else w.get("connected"),
                          load_text(w.get("load"))]
        if wide:
            row += [w.get("tags"), w.get("hardware"), _models(w.get("devices"))]
        rows.append(row)
    return table(headers + (["TAGS", "HARDWARE", "DEVICES"] if wide else []), rows)


def share_texts(worker: dict[str, Any]) -> tuple[str, str, str]:
    """CPU `2/4`, memory `3/15.5G`, GPUs `1/2` (`-` without devices): reserved/total, `?` for the
    reserved part when the answer has none (a replica older than reservations)."""
    got = worker.get("reserved")
    reserved: dict[str, Any] = got if isinstance(got, dict) else {}
    devices = worker.get("devices") or []

    def part(key: str, show: Callable[[Any], str]) -> str:
        value = reserved.get(key)
        return "?" if value is None else show(value)

    cpu = f"{part('cpus', str)}/{worker.get('cpus', '?')}"
    mem = f"{part('memory_gb', _gb)}/{_gb(worker.get('memory_gb'))}G"
    gpu = f"{part('devices', lambda d: str(len(d)))}/{len(devices)}" if devices else "-"
    return cpu, mem, gpu


def _gb(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _models(devices: Any) -> str | None:
    """`0:NVIDIA A10G,1:NVIDIA A10G` from a worker's devices."""
    if not isinstance(devices, list) or not devices:
        return None
    return ",".join(f"{d.get('index')}:{d.get('model', '?')}" for d in devices
                    if isinstance(d, dict))


def load_text(load: Any) -> str | None:
    """`cpu 12% mem 40%` from a worker's heartbeat load (its machine's use, not reservations);
    None when there is none."""
    if not isinstance(load, dict) or not load:
        return None
    parts = []
    for key, label in (("cpu_percent", "cpu"), ("memory_percent", "mem")):
        value = load.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{label} {value:.0f}%")
    return " ".join(parts) or None


def results_table(answer: dict[str, Any]) -> str:
    return table([str(c) for c in answer.get("columns", [])], answer.get("rows", []))


def _took(attempt: dict[str, Any]) -> str | None:
    start, end = attempt.get("started_at_ms") or attempt.get("assigned_at_ms"), attempt.get("ended_at_ms")
    return duration(end - start) if start and end else None


def _short(value: Any, limit: int = 60) -> str | None:
    if value is None:
        return None
    text = _cell(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- haco status --------------------------------------------------------------------------------

def cluster_report(replicas: Sequence[ReplicaStatus], workers: Sequence[dict[str, Any]] | None,
                   queue: dict[str, Any] | None) -> dict[str, Any]:
    """The `haco status` report as a JSON-able dict. Its `health` block is haco.health's verdict
    (healthy, degraded or unhealthy, each problem with what it risks), the same one
    `GET /api/health/cluster` gives; `healthy` is True only for a healthy verdict, `problems` lists
    what is wrong. A replica that does not answer is named by the id its peers know it by."""
    ids = {str(p["api_url"]).rstrip("/"): str(p["id"]) for r in replicas for p in (r.info or {}).get("peers") or []
           if p.get("api_url") and p.get("id")}
    rows = [{"id": ids.get(r.url.rstrip("/")), "url": r.url, "info": r.info} for r in replicas]
    health = verdict(rows, workers)
    up = [r for r in replicas if r.info is not None]
    leaders = sorted((r for r in up if r.info and r.info.get("role") == "leader"),
                     key=lambda r: -int((r.info or {}).get("term") or 0))
    digest = digest_check([r.info for r in up if r.info])
    leader = leaders[0].info if leaders and leaders[0].info else None
    return {
        "healthy": health["status"] == HEALTHY, "problems": [p["what"] for p in health["problems"]],
        "health": health, "size": health["size"], "reachable": len(up),
        "leader": None if leader is None else {"id": leader.get("id"), "url": leader.get("api_url") or leaders[0].url,
                                               "term": leader.get("term")},
        "replicas": [_replica_row(r, digest["index"], ids.get(r.url.rstrip("/"))) for r in replicas],
        "digest": digest, "workers": worker_summary(workers), "queue": queue,
    }


def worker_summary(workers: Sequence[dict[str, Any]] | None) -> dict[str, Any] | None:
    if workers is None:
        return None
    by_state: dict[str, int] = {}
    for w in workers:
        by_state[str(w.get("status"))] = by_state.get(str(w.get("status")), 0) + 1
    live = [w for w in workers if w.get("status") != "lost"]
    return {"by_state": by_state, "capacity": sum(int(w.get("capacity") or 0) for w in live),
            "used": sum(len(w.get("running") or []) for w in live)}


def _replica_row(r: ReplicaStatus, index: int | None, configured_id: str | None) -> dict[str, Any]:
    info = r.info or {}
    digests = held_digests(info)
    apply = info.get("apply") or {}
    return {"id": info.get("id") or configured_id, "stuck": bool(apply.get("stuck")), "url": r.url, "reachable": r.info is not None, "error": r.error,
            "role": info.get("role"), "term": info.get("term"), "leader": info.get("leader"),
            "commit_index": info.get("commit_index"), "applied_index": info.get("applied_index"),
            "log_entries": info.get("log_entries"), "snapshot_index": info.get("snapshot_index"),
            "snapshot_age_s": info.get("snapshot_age_s"), "version": info.get("code_version") or info.get("version"),
            "digest": digests.get(index) if index is not None else None}


def status_text(report: dict[str, Any]) -> str:
    idx = report["digest"]["index"]
    rows = [(r["id"], r["url"], r["role"], r["term"], r["commit_index"], r["applied_index"], r["log_entries"],
             None if r["snapshot_age_s"] is None else duration(1000 * float(r["snapshot_age_s"])),
             r["reachable"], (r["digest"] or "")[:12] or None) for r in report["replicas"]]
    lines = [table(["REPLICA", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LOG", "SNAPSHOT_AGE", "REACHABLE",
                    f"DIGEST@{idx if idx is not None else '?'}"], rows)]
    lines += [f"  {r['error']}" for r in report["replicas"] if r["error"]]
    leader = report["leader"]
    lines.append("")
    lines.append(f"leader:   {leader['id']} ({leader['url']}), term {leader['term']}" if leader else "leader:   none")
    d = report["digest"]
    lines.append("digest:   " + ("n/a (no common index yet)" if idx is None else
                                 f"DIVERGED at index {d['diverged_at']}" if d["diverged"] else
                                 f"consistent at index {idx} across {d['replicas_compared']} replicas"))
    w = report["workers"]
    if w is not None:
        states = ", ".join(f"{n} {s}" for s, n in sorted(w["by_state"].items())) or "none"
        lines.append(f"workers:  {states}; {w['used']}/{w['capacity']} slots used")
    q = report["queue"]
    if q is not None:
        counts = ", ".join(f"{s} {n}" for s, n in sorted((q.get("counts") or {}).items())) or "empty"
        lines.append(f"queue:    {counts}; ready {q.get('ready', '?')}{'; PAUSED' if q.get('paused') else ''}")
    lines += health_lines(report["health"])
    return "\n".join(lines)


def health_lines(health: dict[str, Any]) -> list[str]:
    """`health:   ok`, or the verdict in capitals with each problem and what it risks."""
    problems = health["problems"]
    if not problems:
        return ["health:   ok"]
    head = f"health:   {health['status'].upper()}: "
    if len(problems) == 1:
        return [head + f"{problems[0]['what']}; {problems[0]['risk']}"]
    return [head.rstrip(": ")] + [f"  {p['severity']}: {p['what']}; {p['risk']}" for p in problems]
