"""Executors writing through the attempt log: every byte kept, tails with cut counts, progress."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from haco.worker.executors import ExecContext, get_executor
from haco.worker.joblog import AttemptLogReader, AttemptLogWriter, read_progress


def _ctx(tmp_path: Path, log: AttemptLogWriter, timeout_s: float = 60.0) -> ExecContext:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return ExecContext(job_id=log.job_id, attempt=log.attempt, timeout_s=timeout_s, workdir=workdir, env={}, log=log)


def _read(root: Path, job_id: str, attempt: int, streams: set[str]) -> bytes:
    reader, out, offset = AttemptLogReader(root, job_id, attempt), bytearray(), 0
    for _ in range(1000):
        page = reader.read(offset, 1 << 20, streams)
        out += b"".join(c.data for c in page.chunks)
        offset = page.next_offset
        if page.at_end:
            return bytes(out)
    raise AssertionError("no end")


async def test_shell_output_goes_to_the_log_whole_and_markers_become_progress(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    log = AttemptLogWriter(root, "job-1", 1)
    script = ('i=0; while [ $i -lt 2000 ]; do echo "out $i"; [ $((i % 10)) -eq 0 ] && echo "err $i" >&2; '
              'i=$((i+1)); done; echo \'::haco-progress 0.5 "half"\'; echo "{\\"fraction\\": 0.75}" '
              '> "$HACO_PROGRESS_FILE"; sleep 0.5; echo done')
    out = await get_executor("shell").run({"argv": ["sh", "-c", script]}, _ctx(tmp_path, log))
    log.close(exit_code=0)
    assert out.ok, out.error
    stdout = _read(root, "job-1", 1, {"stdout"})
    assert stdout == b"".join(f"out {i}\n".encode() for i in range(2000)) + b"done\n"
    assert _read(root, "job-1", 1, {"stderr"}) == b"".join(f"err {i}\n".encode() for i in range(0, 2000, 10))
    assert out.result["stdout_tail"].endswith("out 1999\ndone\n")
    assert out.result["stdout_cut_bytes"] == len(stdout) - 4096
    assert out.result["stderr_cut_bytes"] == 0
    progress = read_progress(root, "job-1", 1)
    assert progress is not None and progress.fraction == 0.75


async def test_benchmark_reports_runs_done_as_progress(tmp_path: Path) -> None:
    log = AttemptLogWriter(tmp_path / "logs", "b", 1)
    out = await get_executor("benchmark").run({"argv": ["true"], "repeat": 3, "warmup": 1}, _ctx(tmp_path, log))
    log.close()
    assert out.ok and log.progress is not None
    assert (log.progress.fraction, log.progress.message) == (1.0, "run 4 of 4")


async def test_benchmark_function_reports_progress_through_the_file(tmp_path: Path) -> None:
    log = AttemptLogWriter(tmp_path / "logs", "bf", 1)
    out = await get_executor("benchmark").run({"function": "math:sqrt", "args": [4], "repeat": 5, "warmup": 0},
                                              _ctx(tmp_path, log))
    log.close()
    assert out.ok, out.error
    assert log.progress is not None and log.progress.message == "run 5 of 5"


async def test_pytest_reports_tests_run_as_progress(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_a.py").write_text(textwrap.dedent("""
        def test_one(): pass
        def test_two(): pass
        def test_three(): pass
    """))
    log = AttemptLogWriter(tmp_path / "logs", "pt", 1)
    out = await get_executor("pytest").run({"path": str(suite)}, _ctx(tmp_path, log))
    log.close()
    assert out.ok, out.error
    assert log.progress is not None and (log.progress.fraction, log.progress.message) == (1.0, "3/3 tests")
    assert b"3 passed" in _read(tmp_path / "logs", "pt", 1, {"stdout"})


def test_no_asyncio_needed_to_import_the_plugin() -> None:
    import subprocess
    code = "import sys, haco.worker.executors._pytest_progress; sys.exit('asyncio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


