"""AttemptLogWriter: appends one attempt's stdout and stderr to its segments, bounded, with tails.

Contract: one writer per attempt, in whichever process reads the job's pipes (the agent, or a
per-attempt runner). `write` and `close` are thread-safe and never raise for disk trouble (a full
disk loses output, counted in `lost_bytes`, never the job). No fsync: the files are the job's
output, not the coordinator's state; a host crash may lose the last page cache seconds.
Reopening an existing attempt directory continues after its last whole record (a torn one is cut off).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from haco.worker.joblog.format import (BYTES_MAX_DEFAULT, END, FORMAT_VERSION, HEADER, META, PROGRESS, PROGRESS_IN, RECORD_BYTES_MAX,
                     STREAM_CODE, attempt_dir, encode_record, iter_records, read_json, segment_bytes_for,
                     segment_name, segments, utf8_cut, write_json)
from haco.worker.joblog.progress import MarkerFilter, Progress, parse_progress

log = logging.getLogger(__name__)

TAIL_BYTES_DEFAULT = 4096
PROGRESS_WRITES_PER_S = 5.0
_PROGRESS_FILE_BYTES_MAX = 4096


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Stream:
    __slots__ = ("code", "markers", "held", "total", "tail", "tail_bytes")

    def __init__(self, code: int, tail_bytes: int, take: Callable[[bytes], bool]) -> None:
        self.code = code
        self.markers = MarkerFilter(take)
        self.held = b""  #: an incomplete UTF-8 sequence, completed by the next write
        self.total = 0  #: output bytes of this stream written to the log
        self.tail = bytearray()
        self.tail_bytes = tail_bytes

    def keep(self, data: bytes) -> None:
        self.total += len(data)
        if self.tail_bytes:
            self.tail += data
            if len(self.tail) > 2 * self.tail_bytes:
                del self.tail[:-self.tail_bytes]


class AttemptLogWriter:
    """The writer of one attempt's log under `root` (see format.py for the files)."""

    def __init__(self, root: Path, job_id: str, attempt: int, *, bytes_max: int = BYTES_MAX_DEFAULT,
                 tail_bytes: int = TAIL_BYTES_DEFAULT, clock_ms: Callable[[], int] = wall_ms) -> None:
        if bytes_max < 1:
            raise ValueError("bytes_max must be positive")
        self.job_id, self.attempt = job_id, int(attempt)
        self.directory = attempt_dir(root, job_id, attempt)
        self.bytes_max = bytes_max
        self.segment_bytes = segment_bytes_for(bytes_max)
        self._clock = clock_ms
        self._lock = threading.Lock()
        self._streams = {name: _Stream(code, tail_bytes, self._on_marker) for name, code in STREAM_CODE.items()}
        self._segments: deque[tuple[int, Path, int]] = deque()  #: (first pos, path, file bytes)
        self._fd = -1
        self._pos = 0
        self.dropped_bytes = 0  #: output dropped from the front to stay within bytes_max
        self.lost_bytes = 0  #: output that could not be written (disk full, directory gone)
        self.closed = False
        self.progress: Progress | None = None
        self._progress_written_at = 0.0
        self._progress_dirty = False
        self._progress_in_seen: tuple[int, int] | None = None
        self._open()

    # ---- public ----------------------------------------------------------------------------

    @property
    def end(self) -> int:
        """Offset after the last byte written."""
        return self._pos

    @property
    def progress_file(self) -> Path:
        return self.directory / PROGRESS_IN

    def env(self) -> dict[str, str]:
        """What the job's environment gets: HACO_PROGRESS_FILE."""
        return {"HACO_PROGRESS_FILE": str(self.progress_file)}

    def write(self, stream: str, data: bytes) -> None:
        """Append `data` read from the job's `stream` ("stdout" or "stderr")."""
        if not data:
            return
        with self._lock:
            if self.closed:
                return
            s = self._streams[stream]
            out = s.markers.feed(data)
            if out:
                out = s.held + out if s.held else out
                cut = utf8_cut(out)
                s.held = out[cut:]
                self._append(s, out[:cut])
            self._flush_progress(force=False)

    def tail(self, stream: str) -> bytes:
        """The last `tail_bytes` of `stream`'s output."""
        s = self._streams[stream]
        with self._lock:
            return bytes(s.tail[-s.tail_bytes:]) if s.tail_bytes else b""

    def cut_bytes(self, stream: str) -> int:
        """How many bytes of `stream`'s output came before its tail."""
        s = self._streams[stream]
        with self._lock:
            return s.total - min(len(s.tail), s.tail_bytes)

    def written(self, stream: str) -> int:
        return self._streams[stream].total

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Progress known to the caller (an executor counting runs), as if the job had printed it."""
        progress = parse_progress(f"{min(1.0, max(0.0, fraction))!r} {json.dumps(message)}", self._clock())
        if progress is not None:
            with self._lock:
                self._set_progress(progress)
                self._flush_progress(force=False)

    def poll_progress_file(self) -> None:
        """Read HACO_PROGRESS_FILE if it changed since the last call; also writes a pending
        progress.json. Call every ~0.2 s while the job runs."""
        path = self.progress_file
        try:
            st = os.stat(path)
        except OSError:
            st = None
        seen = None if st is None else (st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen is not None and seen != self._progress_in_seen:
                self._progress_in_seen = seen
                try:
                    with open(path, "rb") as fh:
                        text = fh.read(_PROGRESS_FILE_BYTES_MAX).decode("utf-8", "replace")
                except OSError:
                    text = ""
                progress = parse_progress(text, self._clock())
                if progress is not None:
                    self._set_progress(progress)
            self._flush_progress(force=False)

    def close(self, exit_code: int | None = None) -> None:
        """Flush what is held back, write end.json; later writes are ignored. Idempotent."""
        with self._lock:
            if self.closed:
                return
            for s in self._streams.values():
                out = s.held + s.markers.flush()
                s.held = b""
                self._append(s, out)
            self._flush_progress(force=True)
            self.closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            end = {"ended_ms": self._clock(), "exit_code": exit_code, "end": self._pos,
                   "dropped_bytes": self.dropped_bytes, "lost_bytes": self.lost_bytes,
                   "stdout_bytes": self._streams["stdout"].total, "stderr_bytes": self._streams["stderr"].total}
            try:
                write_json(self.directory / END, end)
            except OSError as exc:
                log.warning("cannot finish log dir=%s error=%s", self.directory, exc)

    def __enter__(self) -> AttemptLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ---------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if read_json(self.directory / META) is None:
                write_json(self.directory / META, {"format": FORMAT_VERSION, "job_id": self.job_id,
                                                   "attempt": self.attempt, "created_ms": self._clock(),
                                                   "bytes_max": self.bytes_max})
            (self.directory / END).unlink(missing_ok=True)
            found = segments(self.directory)
            for pos, path in found:
                self._segments.append((pos, path, path.stat().st_size))
            if found:
                self.dropped_bytes = found[0][0]
                self._resume(found[-1])
            else:
                self._new_segment()
        except OSError as exc:
            log.warning("cannot open log dir=%s error=%s", self.directory, exc)
            self._fd = -1

    def _resume(self, last: tuple[int, Path]) -> None:
        """Continue after the last whole record of the newest segment; cut a torn tail off."""
        pos, path = last
        good, end = 0, pos
        for record in iter_records(path):
            good, end = record.file_end, record.end
        os.truncate(path, good)
        self._segments[-1] = (pos, path, good)
        self._pos = end
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def _new_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        path = self.directory / segment_name(self._pos)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._segments.append((self._pos, path, 0))

    def _append(self, s: _Stream, data: bytes) -> None:
        for start in range(0, len(data), RECORD_BYTES_MAX):
            piece = data[start:start + RECORD_BYTES_MAX]
            try:
                self._append_record(s.code, piece)
            except OSError as exc:
                if not self.lost_bytes:
                    log.warning("job output lost job=%s attempt=%d error=%s", self.job_id, self.attempt, exc)
                self.lost_bytes += len(piece)
                self._pos += len(piece)  # offsets stay the output's; the gap reads as nothing
                continue
            s.keep(piece)

    def _append_record(self, code: int, piece: bytes) -> None:
        if self._fd < 0:
            raise OSError("log directory is not writable")
        size = HEADER.size + len(piece)
        if self._segments[-1][2] and self._segments[-1][2] + size > self.segment_bytes:
            self._new_segment()
            self._drop_oldest()
        record = encode_record(code, self._pos, self._clock(), piece)
        written = os.write(self._fd, record)
        first, path, used = self._segments[-1]
        self._segments[-1] = (first, path, used + written)
        if written != len(record):  # a short write (disk full): cut it back so the file stays whole
            os.ftruncate(self._fd, used)
            self._segments[-1] = (first, path, used)
            raise OSError("short write")
        self._pos += len(piece)

    def _drop_oldest(self) -> None:
        """Delete the oldest segments while the attempt's files exceed bytes_max (the newest stays)."""
        total = sum(size for _, _, size in self._segments)
        while len(self._segments) > 1 and total > self.bytes_max - self.segment_bytes:
            _, path, size = self._segments.popleft()
            path.unlink(missing_ok=True)
            total -= size
            self.dropped_bytes = self._segments[0][0]

    def _on_marker(self, body: bytes) -> bool:
        """A marker line's text (lock held): True when it parsed and counts as progress."""
        progress = parse_progress(body.decode("utf-8", "replace"), self._clock())
        if progress is None:  # not a valid marker after all: the line stays in the log
            return False
        self._set_progress(progress)
        return True

    def _set_progress(self, progress: Progress) -> None:
        self.progress = progress
        self._progress_dirty = True

    def _flush_progress(self, *, force: bool) -> None:
        if not self._progress_dirty or self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._progress_written_at < 1.0 / PROGRESS_WRITES_PER_S:
            return
        self._progress_written_at, self._progress_dirty = now, False
        try:
            write_json(self.directory / PROGRESS, self.progress.to_json())
        except OSError:
            pass


__all__ = ["AttemptLogWriter", "TAIL_BYTES_DEFAULT", "wall_ms"]
