"""The `haco` command: argument parsing, one handler per subcommand, errors as exit codes.

`main(argv) -> int` never lets a traceback out: an error is one `haco: error: ...` line on stderr
and an exit code (EPILOG). Tables go to stdout for people, `--json` prints the API's JSON for
scripts. `coordinator` and `worker` come from their own modules' `register_cli(subparsers)`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from haco.cli import format as fmt
from haco.cli import job_output
from haco.client import FINAL_STATUSES, HacoClient
from haco.errors import ConfigError, HacoError, NotApplied, OutcomeUnknown, Unreachable

log = logging.getLogger(__name__)

DEFAULT_COORDINATORS = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
EXIT_OK, EXIT_FAILED, EXIT_UNHEALTHY, EXIT_UNREACHABLE, EXIT_DEGRADED, EXIT_USAGE = 0, 1, 2, 3, 4, 64
PLUGINS = ("haco.server.main", "haco.worker.agent")
JOB_ID_LEN = 32  #: the ids replicas mint; anything shorter given for a job is a prefix to resolve
EPILOG = """\
coordinators: --coordinators URL,... or $HACO_COORDINATORS, else the `haco up` defaults
  (http://127.0.0.1:7001..7003). Any replica will do; the client fails over by itself.

exit codes:
  0   ok (for `submit --wait`: the job completed)
  1   the job failed, was cancelled or expired; or the cluster refused the operation
  2   cluster unhealthy: no leader, no majority, digest divergence, or writes not committing
  3   no replica reachable
  4   (status) cluster degraded: it works, but a replica is unreachable, lagging or stuck,
      snapshots keep failing or a worker is lost; the text says what and what it risks
  64  usage error
"""

RESULTS_HELP = """\
table `results`: one row per ended attempt (docs/client.md, Results SQL)
  job_id, attempt         the attempt (the key); attempt counts from 1
  worker_id               the worker that ran it
  type, priority, labels  the job's executor type, priority and labels (JSON)
  outcome                 this attempt: completed, failed, timed_out, lost, cancelled
  job_status              the job's status: its final one (completed, failed, cancelled, expired)
                          on every attempt's row once the job ended, pending/running until then
  assigned_at, started_at, ended_at    TIMESTAMP (UTC)
  wall_ms, cpu_ms, peak_rss_bytes      what the attempt used
  error                   why the attempt failed
  result                  the attempt's result (JSON; shell: exit_code, stdout_tail, stderr_tail, ...)
  applied_index           the Raft index at which the row was first recorded
example: haco results --sql "SELECT type, outcome, count(*), avg(wall_ms) FROM results GROUP BY ALL"
"""

_PLUGIN_ERRORS: list[str] = []
ClientCommand = Callable[[argparse.Namespace, HacoClient], Awaitable[int]]


class UsageError(Exception):
    """Bad command-line input found after parsing: exit 64."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        if "invalid choice" in message and _PLUGIN_ERRORS:  # say why `haco worker` may be missing
            message += "; subcommands that failed to load: " + "; ".join(_PLUGIN_ERRORS)
        self.exit(EXIT_USAGE, f"haco: error: {message}\n")


def _common() -> _Parser:
    """Options accepted before or after the subcommand (SUPPRESS keeps a later one from resetting)."""
    p = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--coordinators", metavar="URL,...", help="replica URLs (default: $HACO_COORDINATORS)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning (default), error")
    p.add_argument("--token", metavar="TOKEN", help="API token (default: $HACO_TOKEN)")
    p.add_argument("--token-file", metavar="FILE", help="file holding the API token (default: $HACO_TOKEN_FILE)")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for https replicas (default: $HACO_CA_FILE)")
    p.add_argument("--client-cert", metavar="FILE", help="client certificate for mTLS ($HACO_CLIENT_CERT)")
    p.add_argument("--client-key", metavar="FILE", help="key of --client-cert ($HACO_CLIENT_KEY)")
    p.add_argument("--deadline", type=float, metavar="S",
                   help="client-side: give up on each request to the cluster after S seconds (30); "
                        "says nothing to the job (for that, submit --deadline-at)")
    return p


def build_parser() -> argparse.ArgumentParser:
    _PLUGIN_ERRORS.clear()
    common = _common()  # a second instance for the top: set_defaults would change the shared actions
    parser = _Parser(prog="haco", description="haco: a highly available job coordinator", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common()])
    parser.set_defaults(coordinators=None, json=False, log_level="warning", token=None, token_file=None, ca_file=None,
                        client_cert=None, client_key=None, deadline=30.0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str, func: ClientCommand | Callable[[argparse.Namespace], Any]) -> _Parser:
        p: _Parser = sub.add_parser(name, help=help_, description=help_, parents=[common], epilog=EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    s = add("submit", "submit a job (`-- argv...` for shell), --wait for its result", _submit)
    s.add_argument("--type", default="shell", help="executor: shell (default), python, noop, ...")
    s.add_argument("--payload", metavar="JSON", help="the executor's input, for types other than shell")
    s.add_argument("--priority", type=int, help="higher runs first (default: its queue's)")
    s.add_argument("--queue", help="the named queue it waits in (default: default; haco queue list)")
    s.add_argument("--tag", action="append", default=[], dest="tags", help="required worker tag (repeatable)")
    s.add_argument("--key", help="idempotency key (default: a fresh one)")
    s.add_argument("--timeout", type=float, dest="timeout_s", metavar="S", help="per-attempt timeout")
    s.add_argument("--retries", type=int, dest="max_retries", metavar="N", help="retries after a failure")
    s.add_argument("--backoff", type=float, dest="backoff_s", metavar="S", help="first retry delay")
    s.add_argument("--depends-on", action="append", default=[], metavar="ID", help="run after job ID (repeatable)")
    s.add_argument("--deadline-at", dest="deadline_at", metavar="ISO8601",
                   help="job expiry, kept by the cluster: the job becomes `expired` if no worker has started it "
                        "by then (e.g. 2026-12-01T00:00:00Z); unrelated to --deadline, which is this command's "
                        "own patience per request")
    s.add_argument("--at", dest="not_before_at", metavar="ISO8601", help="start no earlier than this time")
    s.add_argument("--in", dest="not_before_in", metavar="DURATION", help="start no earlier than this from now: 10m")
    s.add_argument("--requirements", metavar="JSON", help='e.g. {"min_memory_gb": 8, "hardware": ["cuda"]}')
    s.add_argument("--label", action="append", default=[], metavar="K=V", help="label (repeatable)")
    s.add_argument("--wait", action="store_true", help="wait for the result; exit 1 unless it completed")
    s.add_argument("--follow", "-f", action="store_true", help="with --wait: print the job's output live")
    s.add_argument("argv", nargs="*", help="the command, after --")
    add("status", "replicas, leader, digests, workers, queue and a health verdict: exit 0 healthy, "
        "4 degraded, 2 unhealthy, 3 unreachable", _status)
    j = add("jobs", "list jobs", _jobs)
    j.add_argument("--status", choices=["pending", "running", *sorted(FINAL_STATUSES)])
    j.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    j.add_argument("--after", type=int, metavar="CURSOR", help="the page after CURSOR (the footer names it)")
    j.add_argument("--type", help="only jobs of this executor type")
    j.add_argument("--oldest", action="store_true", help="oldest first (default: newest first)")
    j.add_argument("--group", help="only this group's jobs")
    j.add_argument("--label", action="append", default=[], metavar="K=V", help="only jobs with this label (repeatable)")
    add("job", "one job: attempts, result, and why it is pending", _job).add_argument("job_id")
    c = add("cancel", "cancel a job", _cancel)
    c.add_argument("job_id")
    c.add_argument("--reason", metavar="TEXT", help="why: recorded as the job's error (default: cancelled by user)")
    add("workers", "list workers: jobs, CPUs, memory and GPUs as reserved/total", _workers).add_argument(
        "--wide", action="store_true", help="also tags, hardware and device models")
    add("drain", "drain a worker: it finishes its jobs and takes no more", _drain).add_argument("worker_id")
    add("undrain", "undo a drain: the worker takes new jobs again", _undrain).add_argument("worker_id")
    r = add("results", "read-only SQL over the results history", _results)
    r.epilog = RESULTS_HELP + "\n" + EPILOG
    r.add_argument("--sql", required=True, metavar="SELECT",
                   help="one read-only SELECT over the table `results` (below); at most 5 s, 256 MB")
    r.add_argument("--limit", type=int, metavar="N",
                   help="the most rows the result may have (default 10000, at most 100000); more is refused")
    add("pause", "pause all scheduling (running jobs go on); one queue: haco queue pause NAME", _pause)
    add("resume", "resume scheduling", _resume)
    from haco.bench import command as bench
    from haco.cli import logs as cli_logs
    from haco.cli import flows as cli_flows
    from haco.cli import security as cli_security
    from haco.cli import operator as cli_operator
    from haco.cli import snapshot as cli_snapshot
    from haco.cli import queues as cli_queues
    from haco.cli import up
    cli_logs.register_cli(add, _client_command)
    bench.register_cli(add)
    up.register_cli(add)
    cli_security.register_cli(add, _client_command, common)
    cli_operator.register_cli(add, _client_command, common)
    cli_flows.register_cli(add, _client_command, common)
    cli_snapshot.register_cli(add, _client_command, common)
    cli_queues.register_cli(add, _client_command, common)
    for name in PLUGINS:
        try:
            importlib.import_module(name).register_cli(sub)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):  # else: not written yet
                _PLUGIN_ERRORS.append(f"{name}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a broken plugin must not take `haco submit` down with it
            _PLUGIN_ERRORS.append(f"{name}: {type(exc).__name__}: {exc}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `haco` console script and `python -m haco`; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        configure_logging(args.log_level)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    for problem in _PLUGIN_ERRORS:
        log.debug("subcommand unavailable module=%s", problem)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result = args.func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return int(result or 0)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the boundary: one line, never a traceback
        log.debug("command failed", exc_info=True)
        return _fail(_describe(exc), exit_code(exc))


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


def configure_logging(level: str) -> None:
    """Once per process: key=value lines on stderr, WARNING unless asked (haco.logs)."""
    from haco.logs import configure
    configure(level)


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, (NotApplied, OutcomeUnknown)):
        return EXIT_UNHEALTHY
    return EXIT_FAILED


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Unreachable):
        return exc.message
    if isinstance(exc, HacoError):
        code = getattr(exc, "reject_code", exc.code)
        return f"{exc.message} [{code}]" if code and code not in exc.message else exc.message
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return f"internal error: {type(exc).__name__}: {exc}"


def _fail(message: str, code: int) -> int:
    print(f"haco: error: {message}", file=sys.stderr)
    return code


def _client_command(fn: ClientCommand) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def run(args: argparse.Namespace) -> int:
        async with make_client(args) as client:
            return await fn(args, client)
    run.__doc__ = fn.__doc__
    return run


def make_client(args: argparse.Namespace, urls: Sequence[str] | str | None = None) -> HacoClient:
    """A client for --coordinators, else $HACO_COORDINATORS (empty counts as unset), else the
    `haco up` defaults. A bad or empty URL list is a UsageError (exit 64), before any request."""
    if urls is None and args.coordinators is not None and not args.coordinators.strip(" ,"):
        raise UsageError("--coordinators is empty; give URL,... (e.g. http://127.0.0.1:7001)")
    urls = urls or args.coordinators or os.environ.get("HACO_COORDINATORS") or DEFAULT_COORDINATORS
    env = os.environ
    try:
        return HacoClient(urls, token=_token(args), deadline_s=args.deadline, on_wait=_say_waiting,
                          ca_file=args.ca_file or env.get("HACO_CA_FILE") or None,
                          client_cert=args.client_cert or env.get("HACO_CLIENT_CERT") or None,
                          client_key=args.client_key or env.get("HACO_CLIENT_KEY") or None)
    except ConfigError as exc:
        raise UsageError(exc.message) from None


def _say_waiting(line: str) -> None:
    print(f"haco: {line}", file=sys.stderr, flush=True)


def _token(args: argparse.Namespace) -> str | None:
    """--token, $HACO_TOKEN, --token-file, $HACO_TOKEN_FILE, in that order."""
    token = args.token or os.environ.get("HACO_TOKEN")
    path = args.token_file or os.environ.get("HACO_TOKEN_FILE")
    if not token and path:
        try:
            token = open(path).read().strip()
        except OSError as exc:
            raise UsageError(f"cannot read token file {path}: {exc.strerror}") from None
    return token or None


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    print(fmt.dumps(data) if args.json else human)


# --- handlers ----------------------------------------------------------------------------------

def build_job(args: argparse.Namespace) -> dict[str, Any]:
    """The job object for `haco submit`, with only the fields given (the server fills defaults)."""
    job: dict[str, Any] = {"type": args.type}
    if args.payload is not None:
        job["payload"] = _json_arg("--payload", args.payload)
    elif args.argv:
        job["payload"] = {"argv": list(args.argv)}
    elif args.type == "shell":
        raise UsageError("a shell job needs its command after --, e.g. haco submit -- echo hi")
    else:
        job["payload"] = {}
    if args.payload is not None and args.argv:
        raise UsageError("give either --payload or a command after --, not both")
    for field, value in (("priority", args.priority), ("queue", args.queue), ("timeout_s", args.timeout_s),
                         ("max_retries", args.max_retries), ("backoff_s", args.backoff_s),
                         ("deadline", args.deadline_at)):
        if value is not None:
            job[field] = value
    if args.tags:
        job["required_tags"] = list(args.tags)
    if args.depends_on:
        job["depends_on"] = list(args.depends_on)
    if args.requirements is not None:
        job["requirements"] = _json_arg("--requirements", args.requirements)
    if args.label:
        if any("=" not in kv for kv in args.label):
            raise UsageError("--label takes KEY=VALUE")
        job["labels"] = dict(kv.split("=", 1) for kv in args.label)
    not_before = _not_before(getattr(args, "not_before_at", None), getattr(args, "not_before_in", None))
    if not_before is not None:
        job["not_before"] = not_before
    return job


def _not_before(at: str | None, in_: str | None) -> str | None:
    """--at ISO8601 (kept as given; the server checks it) or --in 10m (from this machine's clock)."""
    if at and in_:
        raise UsageError("give --at or --in, not both")
    if in_:
        import re
        import time
        from datetime import UTC, datetime
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", in_)
        if m is None:
            raise UsageError(f"--in takes a duration like 90s, 10m, 2h, not {in_!r}")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]
        return datetime.fromtimestamp(time.time() + seconds, UTC).isoformat(timespec="milliseconds")
    return at


def _json_arg(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from None


async def _submit_impl(args: argparse.Namespace, client: HacoClient) -> int:
    job = build_job(args)
    if job.get("depends_on"):  # a prefix is resolved by the cluster (GET /api/jobs/{prefix}), like every job id
        job["depends_on"] = [d if len(d) >= JOB_ID_LEN else str((await client.get(d))["job_id"])
                             for d in job["depends_on"]]
    if args.follow and not args.wait:
        raise UsageError("--follow goes with --wait")
    res = await client.submit(job, key=args.key)
    if not args.wait:
        emit(args, res.job_id + (" (already submitted with this key)" if res.already else ""),
             {"job_id": res.job_id, "index": res.index, "already": res.already})
        return EXIT_OK
    print(f"haco: submitted {res.job_id}", file=sys.stderr)
    if args.follow:
        from haco.cli.logs import follow_job
        final = await follow_job(client, res.job_id, res.index)
    else:
        final = await client.wait(res.job_id, poll_s=2.0, min_index=res.index,
                                  on_change=lambda j: print(f"haco: {_progress(j)}", file=sys.stderr))
    if args.json:
        print(fmt.dumps(final))
    elif not args.follow:  # followed: the output was printed as it came
        out, err = job_output.final_answer(final)
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.stderr.write(err)
    if final.get("status") != "completed":
        print(f"haco: job {res.job_id} {final.get('status')}: {fmt._cell(final.get('error'))}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _progress(job: dict[str, Any]) -> str:
    text = f"job {job.get('job_id')} {job.get('status')}"
    if job.get("status") == "running":
        text += f" (attempt {job.get('attempt')} on {job.get('worker_id')})"
    elif job.get("status") == "pending" and job.get("pending_reason"):
        text += ": " + job_output.pending_line(job["pending_reason"])
    return text


async def _status_impl(args: argparse.Namespace, client: HacoClient) -> int:
    replicas = await client.status()
    known = {r.url for r in replicas}
    extra = list(dict.fromkeys(str(p["api_url"]).rstrip("/") for r in replicas for p in (r.info or {}).get("peers")
                               or [] if p.get("api_url") and str(p["api_url"]).rstrip("/") not in known))
    if extra:
        async with make_client(args, extra) as more:
            replicas += await more.status()
    workers = queue = None
    if any(r.reachable for r in replicas):
        try:
            workers = await client.workers()
            queue = await client.queue_stats()
        except HacoError as exc:
            log.info("workers or queue unavailable error=%s", exc.message)
    report = fmt.cluster_report(replicas, workers, queue)
    emit(args, fmt.status_text(report), report)
    if not report["reachable"]:
        return EXIT_UNREACHABLE
    return {"healthy": EXIT_OK, "degraded": EXIT_DEGRADED}.get(report["health"]["status"], EXIT_UNHEALTHY)


async def _jobs_impl(args: argparse.Namespace, client: HacoClient) -> int:
    if any("=" not in kv for kv in args.label):
        raise UsageError("--label takes KEY=VALUE")
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    labels = dict(kv.split("=", 1) for kv in args.label)
    page = await client.jobs_page(args.status, args.limit, after=args.after, group=args.group, labels=labels,
                                  type=args.type, order="oldest" if args.oldest else "newest")
    emit(args, fmt.jobs_table(page["jobs"]) + fmt.jobs_footer(page, oldest=args.oldest), page["jobs"])
    return EXIT_OK


async def _job_impl(args: argparse.Namespace, client: HacoClient) -> int:
    job = await client.get(args.job_id)
    emit(args, fmt.job_report(job), job)
    return EXIT_OK


async def _cancel_impl(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.cancel(args.job_id, reason=args.reason)
    job_id = answer.get("job_id") or args.job_id
    emit(args, f"{job_id} {'was already cancelled' if answer.get('already') else 'cancelled'}", answer)
    return EXIT_OK


async def _workers_impl(args: argparse.Namespace, client: HacoClient) -> int:
    workers = await client.workers()
    emit(args, fmt.workers_table(workers, wide=args.wide), workers)
    return EXIT_OK


async def _drain_impl(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, f"{args.worker_id} draining", await client.drain(args.worker_id))
    return EXIT_OK


async def _undrain_impl(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.undrain(args.worker_id)
    emit(args, f"{args.worker_id} {'was already active' if answer.get('already') else 'active again'}", answer)
    return EXIT_OK


async def _results_impl(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.query(args.sql, limit=args.limit)
    emit(args, fmt.results_table(answer), answer)
    return EXIT_OK


async def _pause_impl(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, fmt.GLOBAL_PAUSED, await client.pause())
    return EXIT_OK


async def _resume_impl(args: argparse.Namespace, client: HacoClient) -> int:
    emit(args, fmt.GLOBAL_RESUMED, await client.resume())
    return EXIT_OK


_submit, _status, _jobs, _job, _cancel, _workers, _drain, _undrain, _results, _pause, _resume = map(
    _client_command, (_submit_impl, _status_impl, _jobs_impl, _job_impl, _cancel_impl, _workers_impl,
                      _drain_impl, _undrain_impl, _results_impl, _pause_impl, _resume_impl))
