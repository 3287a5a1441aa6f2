"""Damage to a stopped replica's `raft.journal`, the way a disk or a power loss does it.

Reads format 2 as haco/replica/journal.py describes it (a 16-byte header, then records of
`length u32 | checksum u64 | payload | length u32`); chaos imports nothing of the replica, so the
walk over record boundaries is repeated here. Pure file functions, seeded by the caller's rng.

- `cut_inside_last`: truncate the file inside its last record (a torn append).
- `cut_across`: truncate inside an earlier record, so the last two or more are gone or torn.
- `append_garbage`: random bytes after the end.
- `flip_middle`: flip one payload byte of a record with valid records after it: corruption in the
  middle, which must stop the replica (exit 70) until the journal is moved away.

Each returns a short description for the history, or None when the journal has too few records
for that damage (right after a compaction); the caller then records the fault as skipped.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

__all__ = ["DAMAGES", "TAIL_DAMAGES", "damage", "record_offsets"]

HEADER_SIZE = 16
_HEAD = struct.Struct("<IQ")
RECORD_OVERHEAD = _HEAD.size + 4
TAIL_DAMAGES = ("cut_inside_last", "cut_across", "append_garbage")
DAMAGES = (*TAIL_DAMAGES, "flip_middle")


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, payload length) of every whole record, in order; stops at the first that does not fit."""
    data = path.read_bytes()
    out: list[tuple[int, int]] = []
    at = HEADER_SIZE
    while at + RECORD_OVERHEAD <= len(data):
        length, _ = _HEAD.unpack_from(data, at)
        end = at + RECORD_OVERHEAD + length
        if end > len(data):
            break
        out.append((at, length))
        at = end
    return out


def damage(path: Path, kind: str, rng: random.Random) -> str | None:
    records = record_offsets(path)
    size = path.stat().st_size
    if kind == "append_garbage":
        with open(path, "ab") as f:
            f.write(os.urandom(rng.randint(1, 2048)))
        return f"garbage after {len(records)} records"
    if kind == "cut_inside_last":
        if not records:
            return None
        at, length = records[-1]
        cut = rng.randint(at + 1, at + RECORD_OVERHEAD + length - 1)
        os.truncate(path, cut)
        return f"cut at {cut} of {size}, inside the last record (at {at})"
    if kind == "cut_across":
        if len(records) < 3:
            return None
        back = rng.randint(2, min(5, len(records) - 1))
        at, length = records[-back]
        cut = rng.randint(at + 1, at + RECORD_OVERHEAD + length - 1)
        os.truncate(path, cut)
        return f"cut at {cut} of {size}, inside record -{back} of {len(records)}"
    if kind == "flip_middle":
        if len(records) < 3:
            return None
        at, length = records[rng.randint(0, len(records) - 2)]  # a valid record follows it
        if length == 0:
            return None
        pos = at + _HEAD.size + rng.randrange(length)
        with open(path, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
        return f"flipped a bit at {pos} (record at {at}) of {len(records)} records"
    raise ValueError(f"unknown damage {kind!r}")
