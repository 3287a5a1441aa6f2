"""The on-disk format of one attempt's output: directory layout, record codec, segment listing.

An attempt's output lives in `attempt_dir(root, job_id, attempt)`:

- `meta.json`: `{"format": 1, "job_id", "attempt", "created_ms", "bytes_max"}`;
- segments `<pos:020d>.seg`, each named by the log offset of its first payload byte, holding
  records appended back to back: a `HEADER` (magic `HL`, kind, stream, payload length, offset of
  the first payload byte, epoch ms, crc32 of the payload) and then the payload (at most
  `RECORD_BYTES_MAX` bytes);
- `progress.json`: the latest progress, replaced atomically;
- `end.json`: written after the last record; its presence means the output is complete.

Offsets count the output bytes of both streams in the order the writer received them, so one
number resumes a read of either stream or of both. Stdlib only: a per-attempt runner process
imports this without the rest of haco.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

FORMAT_VERSION: Final = 1
MAGIC: Final = b"HL"
HEADER: Final = struct.Struct("<2sBBIQQI")  #: magic, kind, stream, length, pos, t_ms, crc32
KIND_DATA: Final = 1
STREAMS: Final = ("stdout", "stderr")
STREAM_CODE: Final = {"stdout": 1, "stderr": 2}
STREAM_NAME: Final = {1: "stdout", 2: "stderr"}
BOTH: Final = frozenset(STREAMS)
RECORD_BYTES_MAX: Final = 64 * 1024
BYTES_MAX_DEFAULT: Final = 64 * 1024 * 1024  #: per attempt, on disk; past it the oldest segment goes
SEGMENT_BYTES_MAX: Final = 8 * 1024 * 1024
SEGMENT_BYTES_MIN: Final = 64 * 1024
SEGMENT_SUFFIX: Final = ".seg"
META: Final = "meta.json"
END: Final = "end.json"
PROGRESS: Final = "progress.json"
PROGRESS_IN: Final = "progress.in"  #: what HACO_PROGRESS_FILE names
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_SEGMENT_NAME = re.compile(r"(\d{20})\.seg")
_READ_BLOCK: Final = 1024 * 1024


def job_dir_name(job_id: str) -> str:
    """The job's directory name: the id itself when it is a plain name, else a digest of it."""
    if _SAFE_ID.fullmatch(job_id):
        return job_id
    return "x-" + hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def attempt_dir(root: Path, job_id: str, attempt: int) -> Path:
    return Path(root) / job_dir_name(job_id) / str(int(attempt))


def segment_bytes_for(bytes_max: int) -> int:
    """Segment size for a per-attempt bound: an eighth of it, within [64 KiB, 8 MiB]."""
    return max(SEGMENT_BYTES_MIN, min(SEGMENT_BYTES_MAX, bytes_max // 8))


def segment_name(pos: int) -> str:
    return f"{pos:020d}{SEGMENT_SUFFIX}"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The directory's segments, oldest first, as (offset of the first byte, path)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(int(m.group(1)), Path(directory) / n) for n in names if (m := _SEGMENT_NAME.fullmatch(n))]
    found.sort()
    return found


def encode_record(stream: int, pos: int, t_ms: int, data: bytes) -> bytes:
    return HEADER.pack(MAGIC, KIND_DATA, stream, len(data), pos, t_ms, zlib.crc32(data)) + data


@dataclass(frozen=True, slots=True)
class Record:
    file_offset: int  #: where the record's header starts in its segment
    stream: int
    pos: int
    t_ms: int
    data: bytes

    @property
    def end(self) -> int:
        return self.pos + len(self.data)

    @property
    def file_end(self) -> int:
        return self.file_offset + HEADER.size + len(self.data)


def iter_records(path: Path, file_offset: int = 0) -> Iterator[Record]:
    """The segment's records from `file_offset` on, read in 1 MiB blocks.

    Stops at the first incomplete record (a writer may be appending it) or at a damaged one that
    ends the file; skips a damaged record that has more data after it. Raises FileNotFoundError
    when the segment was deleted before it could be opened.
    """
    with open(path, "rb") as fh:
        fh.seek(file_offset)
        buf, base = b"", file_offset
        while True:
            block = fh.read(_READ_BLOCK)
            buf += block
            at = 0
            while len(buf) - at >= HEADER.size:
                magic, kind, stream, length, pos, t_ms, crc = HEADER.unpack_from(buf, at)
                if magic != MAGIC or length > RECORD_BYTES_MAX:
                    return  # not a record boundary: a torn or foreign tail
                end = at + HEADER.size + length
                if end > len(buf):
                    break
                data = buf[at + HEADER.size:end]
                if kind == KIND_DATA and zlib.crc32(data) == crc:
                    yield Record(base + at, stream, pos, t_ms, data)
                elif end == len(buf) and not block:
                    return  # a damaged last record: treated as not written yet
                at = end
            buf, base = buf[at:], base + at
            if not block:
                return


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON file as a map; None when missing, unreadable or not a map."""
    try:
        with open(path, "rb") as fh:
            value = json.loads(fh.read(65536))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Replace `path` atomically (write a sibling, then rename). Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh, separators=(",", ":"))
    os.replace(tmp, path)


def utf8_cut(data: bytes) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 sequence.

    Looks only at the last three bytes, so invalid UTF-8 passes through unchanged.
    """
    n = len(data)
    for back in range(1, min(3, n) + 1):
        byte = data[n - back]
        if byte < 0x80:
            return n
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return n if back >= need else n - back
    return n


__all__ = ["BOTH", "BYTES_MAX_DEFAULT", "END", "FORMAT_VERSION", "HEADER", "META", "PROGRESS", "PROGRESS_IN",
           "RECORD_BYTES_MAX", "STREAMS", "STREAM_CODE", "STREAM_NAME", "Record", "attempt_dir", "encode_record",
           "iter_records", "job_dir_name", "read_json", "segment_bytes_for", "segment_name", "segments",
           "utf8_cut", "write_json"]
