"""Executors against real subprocesses: results, stats, timeouts and cancellation that kill the whole
process group, bad payloads, result truncation, and plugins found through a real entry point."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from haco.worker.executors import ExecContext, ExecResult, executor_names, get_executor
from haco.worker.executors.base import bound_result
from haco.worker.executors.junit import parse_junit, parse_summary_line

STATS = {"wall_ms", "cpu_ms", "peak_rss_bytes"}


def _ctx(tmp_path: Path, *, timeout_s: float = 30.0, env: dict[str, str] | None = None, **kw: Any) -> ExecContext:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return ExecContext(job_id="job-1", attempt=2, timeout_s=timeout_s, workdir=workdir, env=env or {}, **kw)


async def _run(name: str, payload: Any, ctx: ExecContext) -> ExecResult:
    out = await get_executor(name).run(payload, ctx)
    assert STATS <= out.stats.keys(), out.stats
    return out


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _session_alive(sid: int) -> list[int]:
    live = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and _alive(pid):
                live.append(pid)
        except OSError:
            continue
    return live


async def _wait_for_pids(path: Path, count: int, within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= count:
            return [int(x) for x in lines]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never got {count} pids")


# A shell that records its own pid and its background child's, then waits in the foreground.
_SLEEPERS = "echo $$ >> pids; sleep 100 & echo $! >> pids; sleep 100"


# --- shell ---------------------------------------------------------------------------------------


async def test_shell_reports_exit_code_tails_and_job_env(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, env={"FROM_CTX": "ctx", "BOTH": "ctx"})
    script = 'echo "$HACO_JOB_ID/$HACO_ATTEMPT $FROM_CTX $FROM_PAYLOAD $BOTH"; pwd; echo oops >&2'
    payload = {"argv": ["sh", "-c", script], "env": {"FROM_PAYLOAD": "payload", "BOTH": "payload"}}
    out = await _run("shell", payload, ctx)
    assert out.ok and out.error is None and not out.timed_out
    assert out.result == {
        "exit_code": 0,
        "stdout_tail": f"job-1/2 ctx payload ctx\n{ctx.workdir}\n",
        "stderr_tail": "oops\n",
        "stdout_cut_bytes": 0,
        "stderr_cut_bytes": 0,
    }


async def test_shell_nonzero_exit_is_not_ok(tmp_path: Path) -> None:
    (tmp_path / "work" / "sub").mkdir(parents=True)
    out = await _run("shell", {"argv": ["sh", "-c", "pwd; exit 3"], "cwd": "sub"}, _ctx(tmp_path))
    assert not out.ok
    assert out.error == "exited with code 3"
    assert out.result["exit_code"] == 3
    assert out.result["stdout_tail"] == f"{tmp_path / 'work' / 'sub'}\n"


async def test_shell_keeps_only_the_tail_of_large_output(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    out = await _run("shell", {"argv": ["sh", "-c", script]}, _ctx(tmp_path))
    assert out.ok
    tail = out.result["stdout_tail"]
    assert len(tail.encode()) == 4096
    assert tail.endswith("line-2999\n")
    assert out.result["stdout_cut_bytes"] == sum(len(f"line-{i}\n") for i in range(3000)) - 4096


async def test_shell_measures_cpu_and_peak_rss_of_the_job(tmp_path: Path) -> None:
    code = "import time\nx = bytearray(80 * 2**20)\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    out = await _run("shell", {"argv": [sys.executable, "-c", code]}, _ctx(tmp_path))
    assert out.ok, out
    assert out.stats["cpu_ms"] >= 250
    assert out.stats["peak_rss_bytes"] >= 80 * 2**20
    assert out.stats["wall_ms"] >= 300


async def test_concurrent_jobs_do_not_share_their_figures(tmp_path: Path) -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    spinning, idle = await asyncio.gather(
        _run("shell", {"argv": [sys.executable, "-c", busy]}, _ctx(tmp_path)),
        _run("shell", {"argv": ["sh", "-c", "sleep 0.6"]}, _ctx(tmp_path)),
    )
    assert spinning.ok and idle.ok
    assert spinning.stats["cpu_ms"] >= 300
    assert idle.stats["cpu_ms"] < 100


async def test_shell_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, timeout_s=1.0)
    out = await _run("shell", {"argv": ["sh", "-c", _SLEEPERS]}, ctx)
    assert not out.ok and out.timed_out
    assert out.error == "timed out after 1s"
    assert out.result["exit_code"] is None
    shell_pid, background_pid = [int(x) for x in (ctx.workdir / "pids").read_text().split()]
    assert not _alive(shell_pid) and not _alive(background_pid)
    assert _session_alive(shell_pid) == []  # the foreground sleep too
    assert 1000 <= out.stats["wall_ms"] < 1000 + 4000


async def test_cancelling_the_task_kills_the_whole_process_group(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    task = asyncio.create_task(get_executor("shell").run({"argv": ["sh", "-c", _SLEEPERS]}, ctx))
    shell_pid, background_pid = await _wait_for_pids(ctx.workdir / "pids", 2)
    assert _alive(shell_pid) and _alive(background_pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(shell_pid) and not _alive(background_pid)
    assert _session_alive(shell_pid) == []


def _live_in(workdir: Path) -> list[int]:
    """Live processes whose working directory is `workdir`: a job's processes, however far along."""
    live = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd() == str(workdir) and proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc.pid)
        except psutil.Error:
            continue
    return live


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8, 13, 21])
async def test_cancelling_at_any_point_of_the_start_leaves_no_process(tmp_path: Path, yields: int) -> None:
    ctx = _ctx(tmp_path)
    started = time.monotonic()
    task = asyncio.create_task(get_executor("shell").run({"argv": ["sh", "-c", _SLEEPERS]}, ctx))
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _live_in(ctx.workdir) == []
    assert time.monotonic() - started < 5


async def test_processes_left_behind_by_a_finished_job_are_killed(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    started = time.monotonic()
    out = await _run("shell", {"argv": ["sh", "-c", "sleep 100 & echo $! > pids; echo done"]}, ctx)
    assert out.ok and out.result["stdout_tail"] == "done\n"
    (background_pid,) = [int(x) for x in (ctx.workdir / "pids").read_text().split()]
    assert not _alive(background_pid)
    assert time.monotonic() - started < 5


# --- python --------------------------------------------------------------------------------------


@pytest.fixture
def jobmod(tmp_path: Path) -> Path:
    """A module of job functions importable through the payload's pythonpath."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "jobmod.py").write_text(
        textwrap.dedent(
            """
            import asyncio, os, time

            def add(a, b, *, scale=1):
                return {"sum": (a + b) * scale, "attempt": os.environ["HACO_ATTEMPT"]}

            async def async_add(a, b):
                await asyncio.sleep(0.01)
                return a + b

            def boom():
                raise ValueError("no good")

            def not_json():
                return {1, 2}

            def big(n):
                return "x" * n

            def nap(s):
                time.sleep(s)
            """
        )
    )
    return src


async def test_python_calls_the_function_with_args_and_kwargs(tmp_path: Path, jobmod: Path) -> None:
    payload = {"function": "jobmod:add", "args": [2, 3], "kwargs": {"scale": 10}, "pythonpath": [str(jobmod)]}
    out = await _run("python", payload, _ctx(tmp_path))
    assert out.ok, out
    assert out.result == {"sum": 50, "attempt": "2"}
    assert out.stats["cpu_ms"] > 0 and out.stats["peak_rss_bytes"] > 1_000_000


async def test_python_awaits_async_functions(tmp_path: Path, jobmod: Path) -> None:
    payload = {"function": "jobmod:async_add", "args": [2, 3], "pythonpath": [str(jobmod)]}
    out = await _run("python", payload, _ctx(tmp_path))
    assert out.ok and out.result == 5


async def test_python_exception_gives_the_tracebacks_last_line(tmp_path: Path, jobmod: Path) -> None:
    out = await _run("python", {"function": "jobmod:boom", "pythonpath": [str(jobmod)]}, _ctx(tmp_path))
    assert not out.ok
    assert out.error == "ValueError: no good"
    assert 'raise ValueError("no good")' in out.result["traceback"]
    assert "_pyrunner" not in out.result["traceback"]


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("jobmod:not_json", "TypeError: result is not JSON-able"),
        ("jobmod:missing", "AttributeError: module 'jobmod' has no attribute 'missing'"),
        ("nosuchmodule_xyz:f", "ModuleNotFoundError: No module named 'nosuchmodule_xyz'"),
    ],
)
async def test_python_failures_before_or_after_the_call_are_reported(
    tmp_path: Path, jobmod: Path, function: str, error: str
) -> None:
    out = await _run("python", {"function": function, "pythonpath": [str(jobmod)]}, _ctx(tmp_path))
    assert not out.ok
    assert out.error is not None and out.error.startswith(error)


async def test_python_large_result_is_truncated_with_its_size(tmp_path: Path, jobmod: Path) -> None:
    ctx = _ctx(tmp_path, result_bytes_max=1024)
    out = await _run("python", {"function": "jobmod:big", "args": [100_000], "pythonpath": [str(jobmod)]}, ctx)
    assert out.ok
    assert out.result["truncated"] is True
    assert out.result["original_bytes"] == 100_002  # the JSON string's quotes included
    assert out.result["preview"].startswith('"xxx')
    assert bound_result(out.result, 1024) == out.result  # the truncated form fits


async def test_python_timeout_kills_the_interpreter(tmp_path: Path, jobmod: Path) -> None:
    ctx = _ctx(tmp_path, timeout_s=0.5)
    out = await _run("python", {"function": "jobmod:nap", "args": [100], "pythonpath": [str(jobmod)]}, ctx)
    assert not out.ok and out.timed_out
    assert out.error == "timed out after 0.5s"
    assert out.stats["wall_ms"] < 4000


# --- noop ----------------------------------------------------------------------------------------


async def test_noop_returns_its_payload_in_process(tmp_path: Path) -> None:
    payload = {"n": 1, "items": ["a", None, 2.5]}
    out = await _run("noop", payload, _ctx(tmp_path))
    assert out.ok and out.result == payload
    assert out.stats["cpu_ms"] == 0 and out.stats["peak_rss_bytes"] > 1_000_000
    assert out.stats["wall_ms"] < 100


async def test_noop_truncates_a_large_payload_and_refuses_non_json(tmp_path: Path) -> None:
    out = await _run("noop", {"blob": "y" * 5000}, _ctx(tmp_path, result_bytes_max=512))
    assert out.ok and out.result["truncated"] is True and out.result["original_bytes"] == 5011
    bad = await _run("noop", {"x": float("nan")}, _ctx(tmp_path))
    assert not bad.ok and bad.error is not None and "not JSON-able" in bad.error


# --- pytest --------------------------------------------------------------------------------------


async def test_pytest_counts_and_names_the_failing_test(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    suite = ctx.workdir / "suite"
    suite.mkdir()
    (suite / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_passes():\n    assert 1 + 1 == 2\n\n"
        "def test_fails():\n    assert 1 + 1 == 3\n\n"
        "@pytest.mark.skip(reason='not today')\ndef test_skipped():\n    pass\n"
    )
    out = await _run("pytest", {"path": "suite", "args": ["-p", "no:asyncio"]}, ctx)
    assert not out.ok
    assert {k: out.result[k] for k in ("passed", "failed", "skipped", "errors", "failing", "exit_code")} == {
        "passed": 1,
        "failed": 1,
        "skipped": 1,
        "errors": 0,
        "failing": ["suite/test_sample.py::test_fails"],
        "exit_code": 1,
    }
    assert "1 failed, 1 passed, 1 skipped" in out.result["stdout_tail"]
    assert out.error == "tests failed: suite/test_sample.py::test_fails"
    assert out.stats["tests"] == 3


async def test_pytest_with_no_tests_collected_is_not_ok(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (ctx.workdir / "empty").mkdir()
    out = await _run("pytest", {"path": "empty", "args": ["-p", "no:asyncio"]}, ctx)
    assert not out.ok
    assert out.result["exit_code"] == 5
    assert out.error is not None and "no tests collected" in out.error


async def test_pytest_counts_from_the_summary_line_without_a_junit_report(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (ctx.workdir / "test_two.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 0\n")
    # a user's own --junitxml wins over ours (pytest keeps the last one), so ours is never written
    out = await _run("pytest", {"path": ".", "args": ["-p", "no:asyncio", "--junitxml=elsewhere.xml"]}, ctx)
    assert (ctx.workdir / "elsewhere.xml").exists() and not (ctx.workdir / "junit.xml").exists()
    assert (out.result["passed"], out.result["failed"]) == (1, 1)


def test_summary_line_forms() -> None:
    line = parse_summary_line("..F\n=== 2 failed, 10 passed, 1 skipped, 3 errors, 2 warnings in 1.23s ===\n")
    assert line is not None and (line.passed, line.failed, line.skipped, line.errors) == (10, 2, 1, 3)
    quiet = parse_summary_line("F.\nFAILED t.py::test_b - assert 0\n1 failed, 1 passed in 0.05s\n")
    assert quiet is not None and (quiet.passed, quiet.failed) == (1, 1)
    assert parse_summary_line("ERROR: usage: pytest [options]\n") is None


async def test_pytest_missing_is_executor_unavailable_naming_worker_and_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide = tmp_path / "hide"  # the job's interpreter starts without site-packages: no pytest there
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n")
    ctx = _ctx(tmp_path, worker_id="w2")
    out = await _run("pytest", {"path": ".", "env": {"PYTHONPATH": str(hide)}}, ctx)
    assert not out.ok and out.error is not None
    assert out.error.startswith("EXECUTOR_UNAVAILABLE: worker w2 cannot run pytest jobs: module 'pytest'"), out.error


def test_junit_ids_follow_pytest_node_ids(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(  # captured from pytest 9 with -o junit_family=xunit1, bodies cut
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest">'
        '<testcase classname="sub.test_s" name="test_ok" file="sub/test_s.py" line="1" time="0.001" />'
        '<testcase classname="sub.test_s" name="test_bad" file="sub/test_s.py" line="2"><failure message="a"/>'
        "</testcase>"
        '<testcase classname="sub.test_s" name="test_skip" file="sub/test_s.py" line="3"><skipped/></testcase>'
        '<testcase classname="sub.test_s.TestC" name="test_p[2]" file="sub/test_s.py" line="7">'
        '<failure message="b"/></testcase>'
        '<testcase classname="sub.test_s" name="test_err" file="sub/test_s.py" line="12"><error message="c"/>'
        "</testcase>"
        '<testcase classname="" name="sub.test_coll" file="sub/test_coll.py"><error message="d"/></testcase>'
        "</testsuite></testsuites>"
    )
    summary = parse_junit(report)
    assert (summary.passed, summary.failed, summary.skipped, summary.errors) == (1, 2, 1, 2)
    assert summary.failing == [
        "sub/test_s.py::test_bad",
        "sub/test_s.py::TestC::test_p[2]",
        "sub/test_s.py::test_err",
        "sub/test_coll.py",
    ]


# --- benchmark -----------------------------------------------------------------------------------


def _assert_order_stats(result: dict[str, Any], runs: int) -> None:
    assert result["runs"] == runs
    assert 0 < result["min_s"] <= result["median_s"] <= result["p95_s"] <= result["max_s"]
    assert result["peak_rss_bytes"] >= 0


async def test_benchmark_times_an_argv(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    payload = {"argv": ["sh", "-c", "echo run >> runs; sleep 0.02"], "repeat": 4, "warmup": 2}
    out = await _run("benchmark", payload, ctx)
    assert out.ok, out
    _assert_order_stats(out.result, 4)
    assert out.result["min_s"] >= 0.02
    assert (ctx.workdir / "runs").read_text().count("run") == 6  # warm-up runs happened too


async def test_benchmark_times_a_function(tmp_path: Path, jobmod: Path) -> None:
    payload = {"function": "jobmod:nap", "args": [0.01], "repeat": 5, "pythonpath": [str(jobmod)]}
    out = await _run("benchmark", payload, _ctx(tmp_path))
    assert out.ok, out
    _assert_order_stats(out.result, 5)
    assert 0.01 <= out.result["min_s"] < 0.5
    assert out.result["peak_rss_bytes"] > 1_000_000


async def test_benchmark_stops_at_a_failing_run(tmp_path: Path) -> None:
    out = await _run("benchmark", {"argv": ["sh", "-c", "exit 7"], "repeat": 3, "warmup": 0}, _ctx(tmp_path))
    assert not out.ok
    assert out.error == "run 1 of 3 exited with code 7"


# --- payload validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("shell", ["echo"], "shell payload must be an object, got list"),
        ("shell", {}, "shell payload: 'argv' must be a list of strings"),
        ("shell", {"argv": []}, "shell payload: 'argv' must be a non-empty list of strings"),
        ("shell", {"argv": ["echo", 1]}, "shell payload: 'argv' must be a list of strings"),
        ("shell", {"argv": ["true"], "env": {"A": 1}}, "shell payload: 'env' must be an object of string to string"),
        ("shell", {"argv": ["true"], "cwd": "nowhere"}, "shell payload: cwd 'nowhere' is not a directory"),
        ("shell", {"argv": ["true"], "shell": True}, "shell payload: unknown field(s) ['shell']"),
        ("shell", {"argv": ["no-such-program-xyz"]}, "cannot start 'no-such-program-xyz': No such file or directory"),
        ("python", {"function": "os.path.join"}, "python payload: 'function' must be a string 'module:function'"),
        ("python", {"function": "m:f", "args": {}}, "python payload: 'args' must be a list"),
        ("pytest", {"args": []}, "pytest payload: 'path' must be a non-empty string"),
        ("benchmark", {"argv": ["true"], "function": "m:f"}, "benchmark payload: give exactly one of"),
        ("benchmark", {"argv": ["true"], "repeat": 0}, "benchmark payload: 'repeat' must be an integer in [1, 10000]"),
    ],
)
async def test_bad_payload_is_a_clear_failure_not_an_exception(
    tmp_path: Path, name: str, payload: Any, error: str
) -> None:
    out = await _run(name, payload, _ctx(tmp_path))
    assert not out.ok and out.result is None
    assert out.error is not None and out.error.startswith(error), out.error


# --- registry and plugins ------------------------------------------------------------------------


def test_unknown_executor_is_a_key_error_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown executor 'nope'; known: benchmark, noop, pytest, python, shell"):
        get_executor("nope")


def _install_plugin(site: Path, dist: str, entry_points: str, module: str, source: str) -> None:
    """Lay out a real installed distribution (dist-info with entry_points.txt) on `site`."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[haco.executors]\n{entry_points}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


async def test_plugin_executor_is_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    source = """
        from haco.worker.executors import ExecResult

        class Echo:
            name = "echo_plugin"

            async def run(self, payload, ctx):
                return ExecResult(True, {"echo": payload, "job": ctx.job_id}, None, {"items": len(payload)})

        class Broken:
            name = "broken_plugin"

            async def run(self, payload, ctx):
                raise RuntimeError("plugin bug")
    """
    entry_points = "echo_plugin = haco_test_plugin:Echo\nbroken_plugin = haco_test_plugin:Broken"
    _install_plugin(site, "haco_test_plugin", entry_points, "haco_test_plugin", source)
    monkeypatch.syspath_prepend(str(site))
    assert {"echo_plugin", "broken_plugin"} <= set(executor_names())

    out = await _run("echo_plugin", ["a", "b"], _ctx(tmp_path))
    assert out.ok and out.result == {"echo": ["a", "b"], "job": "job-1"}
    assert out.stats["items"] == 2  # its own stats kept, the required ones filled in

    broken = await _run("broken_plugin", {}, _ctx(tmp_path))
    assert not broken.ok
    assert broken.error == "executor broken_plugin raised RuntimeError('plugin bug')"
