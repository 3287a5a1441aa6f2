"""The attempt log files: writer, reader, bound, torn tails, progress markers, retention."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from haco.worker.joblog import AttemptLogReader, AttemptLogWriter, parse_progress, read_progress, sweep
from haco.worker.joblog.format import END, segments


def read_all(reader: AttemptLogReader, streams: frozenset[str] | set[str] = frozenset({"stdout", "stderr"}),
             offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
    out = bytearray()
    for _ in range(10_000):
        page = reader.read(offset, limit, streams)
        for chunk in page.chunks:
            assert chunk.stream in streams
            out += chunk.data
        offset = page.next_offset
        if page.at_end:
            return bytes(out), offset
    raise AssertionError("read did not reach the end")


def test_interleaved_order_and_stream_filters(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "job-1", 1)
    expected = {"stdout": bytearray(), "stderr": bytearray()}
    both = bytearray()
    for i in range(1000):
        stream = "stderr" if i % 10 == 0 else "stdout"
        line = f"{stream} {i}\n".encode()
        w.write(stream, line)
        expected[stream] += line
        both += line
    w.close(exit_code=0)
    r = AttemptLogReader(tmp_path, "job-1", 1)
    assert read_all(r)[0] == bytes(both)
    assert read_all(r, {"stdout"})[0] == bytes(expected["stdout"])
    assert read_all(r, {"stderr"})[0] == bytes(expected["stderr"])
    page = r.read(0, 1 << 20)
    assert page.ended and page.exit_code == 0 and page.at_end
    assert all(c.t_ms > 0 for c in page.chunks)


def test_resume_from_any_offset_gives_each_byte_once(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "j", 1)
    data = b"".join(f"{i:05d}\n".encode() for i in range(20_000))
    for i in range(0, len(data), 777):
        w.write("stdout" if i % 2 else "stderr", data[i:i + 777])
    r = AttemptLogReader(tmp_path, "j", 1)
    out, offset = bytearray(), 0
    while True:
        page = r.read(offset, 1000)  # small pages: cuts inside records
        for chunk in page.chunks:
            assert chunk.pos == len(out)  # both streams read: an offset is the bytes before it
            out += chunk.data
        offset = page.next_offset
        if page.at_end:
            break
    assert bytes(out) == data
    assert not page.ended  # not closed yet
    w.close()
    assert r.read(offset, 10).ended


def test_reader_follows_a_writer_in_another_thread(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "j", 1)
    lines = [f"line {i}\n".encode() for i in range(3000)]

    def produce() -> None:
        for i, line in enumerate(lines):
            w.write("stdout", line)
            if i % 500 == 0:
                time.sleep(0.01)
        w.close(exit_code=3)

    t = threading.Thread(target=produce)
    t.start()
    r = AttemptLogReader(tmp_path, "j", 1)
    got, offset = bytearray(), 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page = r.read(offset, 4096)
        for c in page.chunks:
            got += c.data
        offset = page.next_offset
        if page.ended:
            break
        if page.at_end:
            time.sleep(0.005)
    t.join()
    assert bytes(got) == b"".join(lines)
    assert page.exit_code == 3


def test_bound_keeps_the_newest_part_and_says_how_much_was_dropped(tmp_path: Path) -> None:
    bound = 1 << 20
    w = AttemptLogWriter(tmp_path, "big", 1, bytes_max=bound)
    line = b"x" * 99 + b"\n"
    for _ in range(50_000):  # 5 MB
        w.write("stdout", line)
    w.write("stdout", b"the end\n")
    w.close()
    size = sum(p.stat().st_size for _, p in segments(w.directory))
    assert size <= bound
    r = AttemptLogReader(tmp_path, "big", 1)
    state = r.state()
    assert state.dropped_bytes > 3_000_000 and state.end == 50_000 * 100 + 8
    page = r.read(0, 1 << 20)
    assert page.skipped == state.dropped_bytes and page.chunks[0].pos == state.start
    out, _ = read_all(r)
    assert out.endswith(b"the end\n") and len(out) == state.end - state.start


def test_torn_tail_is_ignored_and_cut_on_reopen(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "j", 1)
    w.write("stdout", b"whole\n")
    w.close()
    (w.directory / END).unlink()
    seg = segments(w.directory)[-1][1]
    with open(seg, "ab") as fh:
        fh.write(b"HL\x01\x01\xff\x00")  # a header cut short
    r = AttemptLogReader(tmp_path, "j", 1)
    assert read_all(r)[0] == b"whole\n"
    w2 = AttemptLogWriter(tmp_path, "j", 1)
    assert w2.end == 6
    w2.write("stderr", b"again\n")
    w2.close()
    assert read_all(r)[0] == b"whole\nagain\n"


def test_progress_markers_are_taken_out_across_chunk_cuts(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "p", 1)
    text = (b"a\n::haco-progress 0.25 \"compiling\"\nb\n::haco-progress oops\n::haco-progress 50% half\n"
            b"c::haco-progress 0.9\n::haco-progress 0.75 \"last\"")
    for i in range(len(text)):  # one byte at a time: every cut
        w.write("stdout", text[i:i + 1])
    w.close()
    out = read_all(AttemptLogReader(tmp_path, "p", 1))[0]
    assert out == b"a\nb\n::haco-progress oops\nc::haco-progress 0.9\n"
    assert w.progress is not None and (w.progress.fraction, w.progress.message) == (0.75, "last")
    saved = read_progress(tmp_path, "p", 1)
    assert saved is not None and saved.fraction == 0.75


def test_progress_file(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "p", 2)
    path = Path(w.env()["HACO_PROGRESS_FILE"])
    path.write_text('{"fraction": 0.5, "message": "half"}')
    w.poll_progress_file()
    assert w.progress is not None and w.progress.message == "half"
    assert parse_progress('0.1 "x y"', 1) is not None and parse_progress("2.0", 1) is None


def test_utf8_is_never_split_between_chunks(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "u", 1)
    text = "héllo wörld ✓ 🎉\n".encode() * 50
    for i in range(0, len(text), 3):
        w.write("stdout", text[i:i + 3])
    w.close()
    for chunk in AttemptLogReader(tmp_path, "u", 1).read(0, 1 << 20).chunks:
        chunk.data.decode()


def test_tail_offset_and_replicated_tail(tmp_path: Path) -> None:
    w = AttemptLogWriter(tmp_path, "t", 1, tail_bytes=100)
    for i in range(1000):
        w.write("stdout", f"out {i}\n".encode())
        if i % 10 == 0:
            w.write("stderr", f"err {i}\n".encode())
    w.close()
    r = AttemptLogReader(tmp_path, "t", 1)
    out, _ = read_all(r, {"stdout"}, offset=r.tail_offset(10, {"stdout"}))
    assert out == b"".join(f"out {i}\n".encode() for i in range(990, 1000))
    err, _ = read_all(r, {"stderr"}, offset=r.tail_offset(2, {"stderr"}))
    assert err == b"err 980\nerr 990\n"
    assert w.tail("stdout").endswith(b"out 999\n") and len(w.tail("stdout")) == 100
    assert w.cut_bytes("stdout") == w.written("stdout") - 100


def test_odd_job_ids_get_their_own_directories(tmp_path: Path) -> None:
    a = AttemptLogWriter(tmp_path, "a/b", 1)
    b = AttemptLogWriter(tmp_path, "a_b", 1)
    assert a.directory != b.directory and a.directory.parent.parent == tmp_path


def test_retention_by_age_and_by_budget(tmp_path: Path) -> None:
    now = time.time()
    for n in range(1, 5):
        w = AttemptLogWriter(tmp_path, "old", n, clock_ms=lambda n=n: int((now - 1000 + n) * 1000))
        w.write("stdout", b"x" * 1000)
        w.close()
    running = AttemptLogWriter(tmp_path, "run", 1)
    running.write("stdout", b"y" * 1000)
    res = sweep(tmp_path, keep_s=997.5, now_s=now, active={("run", 1)})  # attempts 1 and 2 are older
    assert res.removed == 2
    assert sorted(os.listdir(tmp_path / "old")) == ["3", "4"]
    res = sweep(tmp_path, keep_s=1e9, budget_bytes=2600, now_s=now, active={("run", 1)})
    assert sorted(os.listdir(tmp_path / "old")) == ["4"] and (tmp_path / "run" / "1").is_dir()


def test_writer_module_imports_nothing_from_the_rest_of_haco() -> None:
    code = ("import sys, haco.worker.joblog; bad = [m for m in sys.modules if m.startswith(('aiohttp', 'msgpack',"
            " 'psutil', 'haco.worker.agent', 'haco.worker.executors', 'asyncio'))]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
