"""The worker's answers to the leader's log reads: pages, tail, a held read woken by new output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgpack

from haco.worker.joblog import AttemptLogWriter
from haco.worker.log_service import LOG_PAGE_BYTES_MAX, LogService


def _body(frame: bytes) -> dict:  # type: ignore[type-arg]
    return dict(msgpack.unpackb(frame, raw=False))


async def test_pages_tail_and_unknown_attempts(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "j", 1)
    for i in range(100):
        w.write("stdout", b"line %d\n" % i)
    w.close(exit_code=0)
    svc = LogService(tmp_path, running=lambda key: False)
    page = _body(await svc.answer({"rid": "1", "job_id": "j", "attempt": 1, "offset": 0, "limit": 10 ** 9}))
    assert page["ok"] and page["ended"] and page["exit_code"] == 0
    assert b"".join(c[3] for c in page["chunks"]) == b"".join(b"line %d\n" % i for i in range(100))
    tail = _body(await svc.answer({"rid": "2", "job_id": "j", "attempt": 1, "tail": 2, "streams": ["stdout"]}))
    assert b"".join(c[3] for c in tail["chunks"]) == b"line 98\nline 99\n"
    missing = _body(await svc.answer({"rid": "3", "job_id": "j", "attempt": 2}))
    assert not missing["ok"] and missing["code"] == "NO_LOG"
    bad = _body(await svc.answer({"rid": "4", "job_id": "j", "attempt": 1, "streams": ["stdin"]}))
    assert bad["code"] == "MALFORMED"
    assert LOG_PAGE_BYTES_MAX <= 1 << 20  # a page fits a frame (4 MiB) with room to spare


async def test_a_held_read_returns_as_soon_as_output_arrives(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "j", 1)
    svc = LogService(tmp_path, running=lambda key: True)
    started = time.monotonic()
    read = asyncio.create_task(svc.answer({"rid": "1", "job_id": "j", "attempt": 1, "offset": 0, "wait_s": 5}))
    await asyncio.sleep(0.3)
    w.write("stderr", b"late\n")
    page = _body(await read)
    assert page["chunks"][0][1:] == [2, page["chunks"][0][2], b"late\n"] and not page["ended"]
    assert time.monotonic() - started < 2.0
    w.close()
    end = _body(await svc.answer({"rid": "2", "job_id": "j", "attempt": 1, "offset": page["next_offset"],
                                  "wait_s": 5}))
    assert end["ended"] and end["chunks"] == []
