"""`haco logs JOB`: an attempt's output, paged or followed; and the live part of `submit --follow`.

Stdout chunks go to stdout and stderr chunks to stderr, as the job wrote them. When the worker
that has the log is offline, the replicated tail is printed instead, with a line on stderr naming
the worker and how many bytes the tail leaves out; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from haco.client import FINAL_STATUSES, HacoClient, LogChunk, LogCursor
from haco.errors import LogUnavailable, WorkerOffline

EXIT_OK, EXIT_FAILED = 0, 1


def register_cli(add: Callable[..., Any], client_command: Callable[..., Any]) -> None:
    p = add("logs", "a job's output: every byte the worker kept, or -f to follow it live", client_command(_logs))
    p.add_argument("job_id")
    p.add_argument("--attempt", type=int, metavar="N", help="which attempt (default: the latest)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stdout", dest="stream", action="store_const", const="stdout", help="stdout only")
    which.add_argument("--stderr", dest="stream", action="store_const", const="stderr", help="stderr only")
    p.add_argument("-f", "--follow", action="store_true", help="stream new output until the attempt ends")
    p.add_argument("--tail", type=int, metavar="N", help="start at the last N lines")
    p.set_defaults(stream="both")


async def _logs(args: argparse.Namespace, client: HacoClient) -> int:
    if args.tail is not None and args.tail < 0:
        from haco.cli import UsageError
        raise UsageError("--tail takes a number of lines, 0 or more")
    cursor = LogCursor(args.attempt, 0, args.tail)
    try:
        await copy_logs(client, args.job_id, cursor, stream=args.stream, follow=args.follow, as_json=args.json)
    except (WorkerOffline, LogUnavailable) as exc:
        print_tail(exc, args.stream, args.tail)
        return EXIT_FAILED
    return EXIT_OK


async def copy_logs(client: HacoClient, job_id: str, cursor: LogCursor, *, stream: str = "both",
                    follow: bool = False, as_json: bool = False) -> None:
    """Write the attempt's output to this process's stdout/stderr as it arrives (with `as_json`:
    one JSON object per chunk on stdout, `{"offset", "stream", "t_ms", "text" | "b64"}`)."""
    outs: dict[str, BinaryIO] = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    sys.stdout.flush()
    async for chunk in client.logs(job_id, attempt=cursor.attempt, stream=stream, offset=cursor.offset,
                                   tail=cursor.tail, follow=follow, cursor=cursor):
        out = outs["stdout" if as_json else chunk.stream]
        out.write(_chunk_line(chunk) if as_json else chunk.data)
        if follow:
            out.flush()
    for out in outs.values():
        out.flush()
    if cursor.dropped_bytes:
        print(f"haco: the oldest {cursor.dropped_bytes} bytes of this attempt's output were dropped on the worker "
              "(per-attempt log bound); the rest is shown", file=sys.stderr)


def _chunk_line(chunk: LogChunk) -> bytes:
    obj: dict[str, Any] = {"offset": chunk.offset, "stream": chunk.stream, "t_ms": chunk.t_ms}
    try:
        obj["text"] = chunk.data.decode("utf-8")
    except UnicodeDecodeError:
        obj["b64"] = base64.b64encode(chunk.data).decode("ascii")
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def print_tail(exc: WorkerOffline | LogUnavailable, stream: str, lines: int | None) -> None:
    """The replicated tail from the error's detail, then one line saying what it is."""
    tail = exc.detail.get("tail") if isinstance(exc.detail.get("tail"), dict) else {}
    cut = []
    for name, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        if stream not in ("both", name):
            continue
        text = tail.get(f"{name}_tail") if tail else None
        if isinstance(text, str):
            if lines is not None:
                text = "".join(text.splitlines(keepends=True)[-lines:]) if lines else ""
            out.write(text)
            out.flush()
        n = tail.get(f"{name}_cut_bytes") if tail else None
        if isinstance(n, int) and n:
            cut.append(f"{n} bytes of {name} cut")
    what = "the replicated tail" + (f" ({', '.join(cut)})" if cut else "") if tail else "no replicated tail"
    print(f"haco: error: {exc.message} [{exc.code}]; showing {what}", file=sys.stderr)


async def follow_job(client: HacoClient, job_id: str, min_index: int | None) -> dict[str, Any]:
    """`submit --wait --follow`: each attempt's output live, until the job is final; returns the job."""
    attempt = 1
    for _ in range(100_000):  # attempts: bounded by the job's retries
        try:
            await copy_logs(client, job_id, LogCursor(attempt, 0, None), follow=True)
        except (WorkerOffline, LogUnavailable) as exc:
            print(f"haco: {exc.message}", file=sys.stderr)
        for _ in range(1_000_000):  # until the job ends or starts its next attempt (a backoff may be long)
            job = await client.get(job_id, wait_s=0.5, min_index=min_index)
            if job.get("status") in FINAL_STATUSES:
                return job
            if int(job.get("attempt") or 0) > attempt:
                attempt = int(job["attempt"])
                print(f"haco: attempt {attempt} of {job_id}", file=sys.stderr)
                break
    return await client.wait(job_id)


__all__ = ["copy_logs", "follow_job", "print_tail", "register_cli"]
