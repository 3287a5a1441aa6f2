"""`haco run`, `haco group`, `haco retry` and `haco schedule ...`: workflows and time from the shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from haco.cli import format as fmt
from haco.cli.workflow import WorkflowError, load
from haco.client import HacoClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 64
WAIT_POLL_S = 2.0


class FlowUsage(Exception):
    pass


def register_cli(add: Callable[..., argparse.ArgumentParser], client_command: Callable[..., Any],
                 common: argparse.ArgumentParser) -> None:
    r = add("run", "submit a workflow file (YAML or JSON: jobs, dependencies by name, defaults); --wait",
            client_command(_run))
    r.add_argument("file", help="the workflow file (docs/workflows.md)")
    r.add_argument("--group", help="group id (default: the file's, else a fresh one)")
    r.add_argument("--wait", action="store_true", help="wait until every job is final; exit 1 unless all completed")
    g = add("group", "a group: counts by state, failed jobs, start/end, final state; --wait", client_command(_group))
    g.add_argument("group_id")
    g.add_argument("--wait", action="store_true", help="live summary until final; exit 1 unless completed")
    t = add("retry", "run failed, cancelled or expired jobs again (`retry JOB...` or `retry --group ID --failed`)",
            client_command(_retry))
    t.add_argument("job_ids", nargs="*", metavar="JOB")
    t.add_argument("--group", help="retry this group's failed jobs (with --failed)")
    t.add_argument("--failed", action="store_true", help="with --group: its failed, cancelled and expired jobs")
    s = add("schedule", "periodic schedules: create, list, show, pause, resume, delete", _dispatch)
    sub = s.add_subparsers(dest="schedule_action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a schedule (cron + tz, or --every) running a job or a workflow file",
                       parents=[common])
    c.add_argument("schedule_id", metavar="ID")
    when = c.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron expression, e.g. '0 2 * * *' (minute hour day month weekday)")
    when.add_argument("--every", help="an interval: 30s, 10m, 2h")
    c.add_argument("--tz", help="IANA time zone of --cron (default UTC)")
    c.add_argument("--overlap", choices=["skip", "allow", "cancel_previous"], default="skip",
                   help="when the previous run is not final (default skip)")
    c.add_argument("--catch-up", dest="catch_up", choices=["all", "latest", "none"], default="latest",
                   help="slots missed while no leader could fire them (default latest)")
    c.add_argument("--catch-up-window", dest="catch_up_window", default="1h", help="how late a slot may fire (1h)")
    c.add_argument("--jitter", default="0", help="fire each slot up to this much late (fixed per slot)")
    c.add_argument("-f", "--file", help="a workflow file to run each time (else the command after --)")
    c.add_argument("--command", help="the command to run each time, as one string: --command 'make test'")
    c.add_argument("--type", default="shell", help="executor of the command (shell)")
    c.add_argument("argv", nargs="*", help="or the command after -- (when the options come before ID)")
    c.set_defaults(schedule_func=client_command(_create))
    sub.add_parser("list", help="list schedules", parents=[common]).set_defaults(schedule_func=client_command(_list))
    for name, fn, help_ in (("show", _show, "one schedule: last runs and next due times"),
                            ("pause", _pause, "pause a schedule"), ("resume", _resume, "resume (missed slots are not run)"),
                            ("delete", _delete, "delete a schedule (its runs' jobs stay)")):
        p = sub.add_parser(name, help=help_, parents=[common])
        p.add_argument("schedule_id", metavar="ID")
        p.set_defaults(schedule_func=client_command(fn))


def _dispatch(args: argparse.Namespace) -> Any:
    return args.schedule_func(args)


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    print(fmt.dumps(data) if args.json else human)


def _fail(message: str) -> int:
    print(f"haco: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---- workflows and groups -------------------------------------------------------------------

async def _run(args: argparse.Namespace, client: HacoClient) -> int:
    try:
        wf = load(args.file)
    except WorkflowError as exc:
        return _fail(str(exc))
    answer = await client.submit_workflow(wf["jobs"], group=args.group or wf["group"])
    group_id = answer["group_id"]
    names = answer.get("names") or {}
    if not args.wait:
        lines = [f"group {group_id}" + (" (already submitted)" if answer.get("already") else "")]
        lines += [f"  {name}: {job_id}" for name, job_id in names.items()]
        emit(args, "\n".join(lines), answer)
        return EXIT_OK
    print(f"haco: submitted group {group_id} ({len(answer['job_ids'])} jobs)", file=sys.stderr)
    return await _wait_group(args, client, group_id, answer.get("index"))


async def _group(args: argparse.Namespace, client: HacoClient) -> int:
    if args.wait:
        return await _wait_group(args, client, args.group_id, None)
    group = await client.group(args.group_id)
    emit(args, group_report(group), group)
    return EXIT_OK


async def _wait_group(args: argparse.Namespace, client: HacoClient, group_id: str, index: int | None) -> int:
    seen = None
    while True:
        group = await client.group(group_id, wait_s=WAIT_POLL_S, min_index=index)
        line = summary_line(group)
        if line != seen and not args.json:
            print(f"haco: {line}", file=sys.stderr)
            seen = line
        if group.get("final"):
            break
    emit(args, group_report(group), group)
    return EXIT_OK if group.get("state") == "completed" else EXIT_FAILED


def summary_line(group: dict[str, Any]) -> str:
    counts = group.get("counts") or {}
    parts = [f"{n} {state}" for state, n in counts.items() if n]
    return f"group {group.get('group_id')} {group.get('state')}: " + ", ".join(parts) + f" of {group.get('total')}"


def group_report(group: dict[str, Any]) -> str:
    lines = [summary_line(group)]
    for label, key in (("created", "created_at_ms"), ("started", "started_at_ms"), ("ended", "ended_at_ms")):
        if group.get(key):
            lines.append(f"{label}: {_iso(group[key])} ({fmt.ago(group[key])})")
    if group.get("schedule_id"):
        lines.append(f"schedule: {group['schedule_id']} slot {_iso(group['slot_ms'])}")
    failed = group.get("failed") or []
    if failed:
        lines += ["", "failed:"] + [f"  {f.get('name') or f['job_id']} ({f['job_id']}) {f['status']}: "
                                     f"{fmt._cell(f.get('error'))}" for f in failed]
    return "\n".join(lines)


def _iso(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def _retry(args: argparse.Namespace, client: HacoClient) -> int:
    if args.group:
        if args.job_ids or not args.failed:
            return _fail("use `haco retry --group ID --failed`, or `haco retry JOB...`")
        answer = await client.retry_group(args.group)
    elif args.job_ids:
        answer = await client.retry(args.job_ids)
    else:
        return _fail("name jobs to retry, or --group ID --failed")
    retried, dependents = answer.get("retried") or [], answer.get("dependents") or []
    lines = [f"retried {len(retried)} job(s)" + (f" and {len(dependents)} dependent(s)" if dependents else "")]
    lines += [f"  {j}: {st} (unchanged)" for j, st in (answer.get("unchanged") or {}).items()]
    emit(args, "\n".join(lines), answer)
    return EXIT_OK


# ---- schedules ------------------------------------------------------------------------------

def schedule_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"id": args.schedule_id, "overlap": args.overlap, "catch_up": args.catch_up,
                            "catch_up_window": args.catch_up_window, "jitter": args.jitter}
    if args.cron:
        body.update(cron=args.cron, tz=args.tz or "UTC")
    else:
        body["every"] = args.every
    if args.command:
        import shlex
        if args.argv:
            raise FlowUsage("give --command or a command after --, not both")
        args.argv = shlex.split(args.command)
    if args.file:
        if args.argv:
            raise FlowUsage("give a workflow file or a command, not both")
        try:
            body["workflow"] = {"jobs": load(args.file)["jobs"]}
        except WorkflowError as exc:
            raise FlowUsage(str(exc)) from None
    elif args.argv:
        body["job"] = {"type": args.type, "payload": {"argv": list(args.argv)}}
    else:
        raise FlowUsage("a schedule runs a workflow file (-f) or a command (--command '...')")
    return body


async def _create(args: argparse.Namespace, client: HacoClient) -> int:
    try:
        body = schedule_body(args)
    except FlowUsage as exc:
        return _fail(str(exc))
    answer = await client.create_schedule(body)
    sc = answer.get("schedule") or {}
    emit(args, f"schedule {args.schedule_id} {'exists' if answer.get('already') else 'created'}; next due "
               f"{', '.join(_iso(t) for t in sc.get('next_due_ms') or []) or '-'}", answer)
    return EXIT_OK


async def _list(args: argparse.Namespace, client: HacoClient) -> int:
    schedules = await client.schedules()
    rows = [(s["schedule_id"], s.get("cron") or f"every {s.get('every_s'):g}s", s.get("tz") or "",
             "paused" if s.get("paused") else "active", s.get("overlap"), s.get("fired"), s.get("skipped"),
             _iso((s.get("next_due_ms") or [None])[0])) for s in schedules]
    emit(args, fmt.table(["SCHEDULE", "WHEN", "TZ", "STATE", "OVERLAP", "FIRED", "SKIPPED", "NEXT"], rows),
         schedules)
    return EXIT_OK


async def _show(args: argparse.Namespace, client: HacoClient) -> int:
    s = await client.schedule(args.schedule_id)
    lines = [f"schedule: {s['schedule_id']} ({'paused' if s.get('paused') else 'active'})",
             f"when: {s.get('cron') or 'every %gs' % s.get('every_s')}" + (f" in {s['tz']}" if s.get("tz") else ""),
             f"overlap: {s.get('overlap')}; catch-up: {s.get('catch_up')} within {s.get('catch_up_window_s'):g}s; "
             f"jitter {s.get('jitter_s'):g}s",
             f"jobs: {', '.join(n or '?' for n in s.get('jobs') or [])}",
             f"fired {s.get('fired')}, skipped {s.get('skipped')}",
             "next due: " + (", ".join(_iso(t) for t in s.get("next_due_ms") or []) or "-"), "", "last runs:"]
    runs = s.get("runs") or []
    lines += [f"  {_iso(r['slot_ms'])} {r['outcome']}" + (f" group {r['group_id']}" if r.get("group_id") else "")
              for r in runs[::-1]] or ["  none yet"]
    emit(args, "\n".join(lines), s)
    return EXIT_OK


async def _pause(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, f"schedule {args.schedule_id} paused", await client.pause_schedule(args.schedule_id))
    return EXIT_OK


async def _resume(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, f"schedule {args.schedule_id} resumed", await client.resume_schedule(args.schedule_id))
    return EXIT_OK


async def _delete(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, f"schedule {args.schedule_id} deleted", await client.delete_schedule(args.schedule_id))
    return EXIT_OK


__all__ = ["register_cli"]
