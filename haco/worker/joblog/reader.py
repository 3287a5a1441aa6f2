"""AttemptLogReader: pages of one attempt's output, by offset, while a writer may still append.

Blocking file I/O: call it from a thread (`asyncio.to_thread`). Memory per call is bounded by
`limit_bytes` plus one 1 MiB read block. A reader object remembers where its last page ended, so
a follower's next page starts without rescanning its segment.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from haco.worker.joblog.format import (BOTH, END, PROGRESS, STREAM_CODE, STREAM_NAME, Record, attempt_dir, iter_records, read_json,
                     segments, utf8_cut)
from haco.worker.joblog.progress import Progress, progress_from_json

SCAN_BYTES_MAX = 8 * 1024 * 1024  #: bytes of other streams skipped in one call before it returns what it has


@dataclass(frozen=True, slots=True)
class Chunk:
    pos: int  #: offset of the first byte
    stream: str  #: "stdout" or "stderr"
    t_ms: int  #: when the writer got it from the job (epoch ms)
    data: bytes


@dataclass(frozen=True, slots=True)
class LogPage:
    chunks: list[Chunk]
    next_offset: int  #: resume here: every byte before it was returned or is of another stream
    start: int  #: offset of the oldest byte still kept (= bytes dropped from the front)
    at_end: bool  #: nothing was written past next_offset (yet)
    ended: bool  #: the output is complete and next_offset is its end
    exit_code: int | None = None
    skipped: int = 0  #: bytes asked for (offset < start) that were dropped: not returned


@dataclass(frozen=True, slots=True)
class LogState:
    start: int
    end: int
    ended: bool
    exit_code: int | None
    ended_ms: int | None
    dropped_bytes: int


@dataclass(slots=True)
class AttemptLogReader:
    root: Path
    job_id: str
    attempt: int
    _hint: tuple[int, Path, int] | None = field(default=None)  #: (offset, segment, file offset) after the last page

    @property
    def directory(self) -> Path:
        return attempt_dir(self.root, self.job_id, self.attempt)

    def exists(self) -> bool:
        return self.directory.is_dir()

    def state(self) -> LogState:
        """Where the kept output starts and ends, and whether it is complete (scans the last segment)."""
        end_info = read_json(self.directory / END)
        segs = segments(self.directory)
        start = segs[0][0] if segs else 0
        end = start
        if segs:
            end = segs[-1][0]
            for record in _records(segs[-1][1]):
                end = record.end
        if end_info is not None and isinstance(end_info.get("end"), int):
            end = max(end, end_info["end"])
        return LogState(start, end, end_info is not None, _exit_code(end_info),
                        end_info.get("ended_ms") if end_info else None, start)

    def read(self, offset: int, limit_bytes: int, streams: Collection[str] = BOTH) -> LogPage:
        """Up to `limit_bytes` of `streams`' output from `offset` on (cut at a UTF-8 boundary when
        that leaves something). An offset before the oldest kept byte starts at that byte."""
        codes = {STREAM_CODE[s] for s in streams}
        end_info = read_json(self.directory / END)  # before the data: then "ended" cannot miss a byte
        for _ in range(3):  # the oldest segment may be deleted between the listing and the open
            try:
                return self._read(offset, max(1, limit_bytes), codes, end_info)
            except FileNotFoundError:
                self._hint = None
        return LogPage([], offset, offset, True, False)

    def tail_offset(self, lines: int, streams: Collection[str] = BOTH) -> int:
        """The offset where the last `lines` lines of `streams` begin (a final newline ends the last
        line; it does not start one). One segment in memory at a time."""
        codes = {STREAM_CODE[s] for s in streams}
        segs = segments(self.directory)
        if lines <= 0:
            return self.state().end
        needed = lines  # newlines still to find, counting the one before the first wanted line
        trailing = True  # the very last byte of the selected output not seen yet
        for _, path in reversed(segs):
            try:
                records = [r for r in _records(path) if r.stream in codes]
            except FileNotFoundError:
                break
            for record in reversed(records):
                data = record.data
                cut = len(data)
                if trailing and data:
                    trailing = False
                    if data.endswith(b"\n"):
                        cut -= 1
                while True:
                    nl = data.rfind(b"\n", 0, cut)
                    if nl < 0:
                        break
                    needed -= 1
                    if needed == 0:
                        return record.pos + nl + 1
                    cut = nl
        return segs[0][0] if segs else 0

    # ---- internals ---------------------------------------------------------------------------

    def _read(self, offset: int, limit: int, codes: set[int], end_info: dict[str, object] | None) -> LogPage:
        segs = segments(self.directory)
        if not segs:
            return LogPage([], offset, offset, True, end_info is not None, _exit_code(end_info))
        start = segs[0][0]
        skipped = max(0, start - offset)
        offset = max(offset, start)
        index = max(i for i, (pos, _) in enumerate(segs) if pos <= offset or i == 0)
        file_offset = 0
        if self._hint is not None and self._hint[0] == offset and self._hint[1] == segs[index][1]:
            file_offset = self._hint[2]
        chunks: list[Chunk] = []
        got = scanned = 0
        next_offset = offset
        full = False
        for i in range(index, len(segs)):
            path = segs[i][1]
            for record in _records(path, file_offset if i == index else 0):
                if record.end <= offset:
                    continue
                begin = max(record.pos, offset)
                piece = record.data[begin - record.pos:]
                if record.stream in codes:
                    room = limit - got
                    if len(piece) > room:
                        piece = piece[:utf8_cut(piece[:room]) or room]
                    chunks.append(Chunk(begin, STREAM_NAME.get(record.stream, "stdout"), record.t_ms, piece))
                    got += len(piece)
                    next_offset = begin + len(piece)
                    whole = next_offset >= record.end
                    self._hint = (next_offset, path, record.file_end if whole else record.file_offset)
                    full = got >= limit or not whole
                else:
                    scanned += len(piece)
                    next_offset = record.end
                    self._hint = (next_offset, path, record.file_end)
                    full = scanned >= SCAN_BYTES_MAX
                if full:
                    return LogPage(chunks, next_offset, start, False, False, None, skipped)
            next_offset = max(next_offset, segs[i + 1][0]) if i + 1 < len(segs) else next_offset
        ended = end_info is not None
        return LogPage(chunks, next_offset, start, True, ended, _exit_code(end_info), skipped)


def _records(path: Path, file_offset: int = 0) -> Iterator[Record]:
    return iter_records(path, file_offset)


def _exit_code(end_info: dict[str, object] | None) -> int | None:
    code = end_info.get("exit_code") if end_info else None
    return code if isinstance(code, int) else None


def read_progress(root: Path, job_id: str, attempt: int) -> Progress | None:
    """The attempt's latest progress.json, None when there is none."""
    return progress_from_json(read_json(attempt_dir(root, job_id, attempt) / PROGRESS))


__all__ = ["AttemptLogReader", "Chunk", "LogPage", "LogState", "SCAN_BYTES_MAX", "read_progress"]
