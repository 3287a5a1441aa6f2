"""A job's output as `haco submit --wait` and `haco job ID` show it: the last attempt's stdout and
stderr tails (what the replicated result keeps: the last 4 KiB of each, with `stdout_cut_bytes` /
`stderr_cut_bytes` saying how much came before), test counts, a traceback; and a pending job's
reasons on one line. Pure functions of the API's job object; `haco logs ID` has the whole output.
"""

from __future__ import annotations

import json
from typing import Any

_TAIL_KEYS = ("stdout_tail", "stderr_tail", "stdout_cut_bytes", "stderr_cut_bytes")
_TEST_KEYS = ("passed", "failed", "skipped", "errors")


def last_result(job: dict[str, Any]) -> Any:
    """The result of the job (completed), else of its last attempt that reported one (failed: the
    tails and diagnostics its executor returned)."""
    if job.get("status") == "completed":
        return job.get("result")
    for attempt in reversed(job.get("attempts") or []):
        if attempt.get("result") is not None:
            return attempt["result"]
    return None


def streams(result: Any) -> list[tuple[str, str, int]]:
    """(stream, tail, bytes cut before it) for each non-empty tail of a result."""
    if not isinstance(result, dict):
        return []
    out = []
    for name in ("stdout", "stderr"):
        tail = result.get(f"{name}_tail", result.get(name))
        if isinstance(tail, str) and tail:
            cut = result.get(f"{name}_cut_bytes")
            out.append((name, tail, cut if isinstance(cut, int) and cut > 0 else 0))
    return out


def cut_note(job_id: Any, stream: str, cut: int) -> str:
    return f"[{stream}: the first {cut:,} bytes are cut; `haco logs {job_id}` has all of it]"


def test_summary(result: Any) -> str | None:
    """`1 passed, 1 failed, 0 skipped, 0 errors; failing: t.py::test_b` for a pytest result."""
    if not isinstance(result, dict) or not all(isinstance(result.get(k), int) for k in _TEST_KEYS):
        return None
    text = ", ".join(f"{result[k]} {k}" for k in _TEST_KEYS)
    failing = result.get("failing")
    if isinstance(failing, list) and failing:
        text += "; failing: " + ", ".join(str(f) for f in failing)
    return text


def rest(result: Any) -> Any:
    """The result less what is shown on its own (tails, test counts): None when nothing is left."""
    if not isinstance(result, dict):
        return result
    shown = set(_TAIL_KEYS) | {"stdout", "stderr"}
    if test_summary(result) is not None:
        shown |= {*_TEST_KEYS, "failing", "exit_code"}
    left = {k: v for k, v in result.items() if k not in shown}
    if set(left) <= {"exit_code", "traceback"} and (streams(result) or "traceback" in left):
        left.pop("exit_code", None)  # said by the error line
    return left or None


def report_sections(job: dict[str, Any]) -> list[str]:
    """`haco job ID`'s lines for the output: test counts, each tail (cut ones say so), a traceback,
    then whatever else the result holds."""
    result = last_result(job)
    lines: list[str] = []
    summary = test_summary(result)
    if summary is not None:
        lines += ["", f"tests: {summary}"]
    for stream, tail, cut in streams(result):
        which = "" if job.get("status") == "completed" else f" of attempt {_last_attempt(job)}"
        lines += ["", f"{stream}{which}:"]
        if cut:
            lines.append("  " + cut_note(job.get("job_id"), stream, cut))
        lines += ["  " + line for line in tail.rstrip("\n").splitlines()]
    left = rest(result)
    if isinstance(left, dict) and isinstance(left.get("traceback"), str):
        lines += ["", "traceback:"] + ["  " + line for line in left.pop("traceback").rstrip().splitlines()]
    if left is not None and left != {} and job.get("status") == "completed":
        lines += ["", "result:"] + ["  " + line for line in json.dumps(left, indent=2, sort_keys=True).splitlines()]
    return lines


def _last_attempt(job: dict[str, Any]) -> Any:
    attempts = job.get("attempts") or []
    return attempts[-1].get("attempt") if attempts else job.get("attempt")


def final_answer(job: dict[str, Any]) -> tuple[str, str]:
    """(stdout, stderr) text for `haco submit --wait`'s end: the output as the job printed it (its
    tails), test counts and a traceback on stderr, a completed job's other result as JSON."""
    result = last_result(job)
    out: list[str] = []
    err: list[str] = []
    summary = test_summary(result)
    for stream, tail, cut in streams(result):
        if cut:
            err.append(cut_note(job.get("job_id"), stream, cut) + "\n")
        (out if stream == "stdout" else err).append(tail if tail.endswith("\n") else tail + "\n")
    if summary is not None:
        (out if job.get("status") == "completed" else err).append(f"tests: {summary}\n")
    left = rest(result)
    if isinstance(left, dict) and isinstance(left.get("traceback"), str):
        err.append(left.pop("traceback").rstrip() + "\n")
    if left is not None and left != {} and job.get("status") == "completed":
        out.append(json.dumps(left, indent=2, sort_keys=True) + "\n")
    return "".join(out), "".join(err)


def pending_line(reason: Any) -> str:
    """A pending job's reasons on one line: `no worker fits (w2: missing tags ['gpu']; w3: ...)`."""
    if not reason:
        return "no reason given yet"
    if not isinstance(reason, dict):
        return str(reason)
    parts = []
    for key, value in reason.items():
        if key in ("no_worker_fits", "unfit_workers") and isinstance(value, dict):
            label = "no worker fits" if key == "no_worker_fits" else "workers that do not fit"
            parts.append(f"{label} (" + "; ".join(f"{w}: {_words(why)}" for w, why in value.items()) + ")")
        elif key == "paused":
            parts.append("all scheduling is paused (haco resume)")
        elif key == "queue_paused":
            parts.append(f"its queue {value} is paused (haco queue resume {value})")
        elif key == "queue_full":
            parts.append(str(value))
        elif key == "waiting_on":
            parts.append(f"waiting for dependencies {_words(value)}")
        elif key == "backoff_until_ms":
            parts.append("backing off before a retry")
        elif key in ("workers", "executor", "queued", "failing"):
            parts.append(str(value))
        else:
            parts.append(f"{key.replace('_', ' ')}: {_words(value)}")
    return "; ".join(parts)


def _words(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)
