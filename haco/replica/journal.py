"""The Raft journal: `raft.journal` (log records) and `raft.journal.meta` (term, vote, commit index).

Implements the journal interface pysyncobj's SyncObj calls (add, clear, deleteEntriesFrom,
deleteEntriesTo, item access, len, the meta getters and setters, onOneSecondTimer, _destroy) and
imports nothing from pysyncobj. Entries stay in memory as pysyncobj's `(command, index, term)`
tuples; the command bytes are opaque here.

Format 2 (written by this module):

    header   b"HACOJRNL" | format u32 (2) | reserved u32                      16 bytes
    record   length u32 | xxh3_64(payload, seed=length) u64 | payload | length u32
    payload  index u64 | term u64 | command bytes

Records are appended with one positioned write; the file ends where the last record ends (no
padding, no end offset in the header), so a crash can leave only a torn tail. Truncation is an
ftruncate; a compaction writes the kept records to a new file and renames it into place, so it is
atomic. With `fsync`, every change is made durable (fdatasync, the directory after a rename)
before the call returns, which is before pysyncobj acknowledges or sends anything about it.

At open the whole file is checked: each record must fit, its two lengths agree, its checksum
match and its index follow the previous one. At the first record that fails:

- nothing valid after it (a torn or partly garbage tail: a power loss without fsync, a crash
  mid-append, bytes appended after the end): the tail is cut off with one WARNING naming the
  file, the index range dropped and the bytes. Those entries were either never acknowledged by
  this replica (fsync) or not promised to survive (no fsync); the leader re-sends them.
- a valid record after it (corruption in the middle): `JournalCorrupt`, naming the file and the
  offset and the recovery: move `raft.journal` away; the replica rebuilds from its peers.

Format 1 is pysyncobj 0.3.17's own (b"PYSYNCOBJ" header, records `length | index, term, command |
length`, an end offset in the header, no checksums), which the previous release wrote. It is read
(checked for structure only: lengths and indexes) and rewritten once as format 2 at open; the
pickled meta file it came with is read with an unpickler that builds nothing but plain values.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import xxhash

log = logging.getLogger("haco.replica.journal")

MAGIC: Final = b"HACOJRNL"
FORMAT: Final = 2
HEADER: Final = struct.Struct("<8sII")
HEADER_SIZE: Final = HEADER.size  # 16
_HEAD = struct.Struct("<IQ")  # length, checksum
_LEN = struct.Struct("<I")
_POS = struct.Struct("<QQ")  # index, term
RECORD_OVERHEAD: Final = _HEAD.size + _LEN.size  # 16 bytes around each payload
RECORD_BYTES_MAX: Final = 2**31  #: a length above this is garbage, not a record

# pysyncobj 0.3.17's format 1
_V1_NAME = b"PYSYNCOBJ"
_V1_FIRST = 24 + 8 + 4 + 4
_V1_END_AT = 24 + 8 + 4

RECOVERY: Final = ("stop this replica, move raft.journal out of its data dir (keep raft.journal.meta) and start it "
                   "again: it rebuilds its log from its peers")


class JournalCorrupt(Exception):
    """The journal is damaged before its last good record (or unreadable): the replica must not start."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        self.path, self.offset, self.reason = path, offset, reason
        super().__init__(f"{path} is corrupt at offset {offset} ({reason}); {RECOVERY}")


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a check of the file found (also what `haco.replica.journal.scan` returns to tools)."""

    entries: list[tuple[bytes, int, int]]
    offsets: list[int]  #: where each entry's record starts
    good_end: int  #: the offset just after the last good record
    size: int  #: the file's size
    dropped_first: int | None  #: index of the first entry cut off, when known
    dropped_last: int | None  #: the highest index seen in the cut tail, when known
    format: int


def checksum(payload: bytes | memoryview, length: int) -> int:
    return xxhash.xxh3_64_intdigest(payload, seed=length)


def encode_record(command: bytes, idx: int, term: int) -> bytes:
    payload = _POS.pack(idx, term) + command
    n = len(payload)
    return _HEAD.pack(n, checksum(payload, n)) + payload + _LEN.pack(n)


def _record_at(data: bytes, pos: int, size: int) -> tuple[int, int, int, bytes] | str:
    """(next offset, index, term, command) of a valid format-2 record at `pos`, or why it is not one."""
    if pos + _HEAD.size > size:
        return "record header cut short"
    n, digest = _HEAD.unpack_from(data, pos)
    if n < _POS.size or n > RECORD_BYTES_MAX:
        return f"implausible record length {n}"
    end = pos + _HEAD.size + n + _LEN.size
    if end > size:
        return f"record of {n} bytes runs past the end of the file"
    start = pos + _HEAD.size
    if _LEN.unpack_from(data, start + n)[0] != n:
        return "record lengths disagree"
    view = memoryview(data)[start:start + n]
    if checksum(view, n) != digest:
        return "record checksum mismatch"
    idx, term = _POS.unpack_from(data, start)
    return end, idx, term, bytes(view[_POS.size:])


def _torn_index(data: bytes, pos: int, size: int) -> int | None:
    """The index a damaged record at `pos` claims, if its position field is there at all."""
    if pos + _HEAD.size + _POS.size <= size:
        return int(_POS.unpack_from(data, pos + _HEAD.size)[0])
    return None


def scan(path: Path) -> ScanResult:
    """Check a journal file; raises JournalCorrupt for damage before the last good record."""
    data = path.read_bytes()
    size = len(data)
    if size == 0:
        return ScanResult([], [], 0, 0, None, None, FORMAT)
    if data.startswith(_V1_NAME):
        return _scan_v1(path, data)
    if size < HEADER_SIZE:
        raise JournalCorrupt(path, 0, "file header cut short")
    magic, fmt, _ = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise JournalCorrupt(path, 0, "not a haco journal (bad file header)")
    if fmt != FORMAT:
        raise JournalCorrupt(path, 8, f"journal format {fmt} is not one this version reads ({FORMAT})")
    entries: list[tuple[bytes, int, int]] = []
    offsets: list[int] = []
    pos = HEADER_SIZE
    why = ""
    while pos < size:
        rec = _record_at(data, pos, size)
        if isinstance(rec, str):
            why = rec
            break
        end, idx, term, command = rec
        if entries and (idx != entries[-1][1] + 1 or term < entries[-1][2]):
            why = f"entry index {idx} term {term} does not follow index {entries[-1][1]} term {entries[-1][2]}"
            break
        entries.append((command, idx, term))
        offsets.append(pos)
        pos = end
    if pos >= size:
        return ScanResult(entries, offsets, pos, size, None, None, FORMAT)
    follower = _valid_record_after(data, pos, size)
    if follower is not None:
        raise JournalCorrupt(path, pos, f"{why}; a valid record follows at offset {follower}")
    first = entries[-1][1] + 1 if entries else _torn_index(data, pos, size)
    return ScanResult(entries, offsets, pos, size, first, _last_torn_index(data, pos, size), FORMAT)


def _valid_record_after(data: bytes, bad: int, size: int) -> int | None:
    """Offset of a valid record that starts after the damaged one at `bad`, else None.

    Two places are looked at: just after the damaged record when its framing is intact (its
    payload was damaged), and the last record of the file, found from the trailing length
    (the damaged record's own length may be what was hit)."""
    if bad + _HEAD.size <= size:
        n = _HEAD.unpack_from(data, bad)[0]
        nxt = bad + _HEAD.size + n + _LEN.size
        if _POS.size <= n <= RECORD_BYTES_MAX and nxt <= size and _LEN.unpack_from(data, nxt - _LEN.size)[0] == n:
            if nxt < size and not isinstance(_record_at(data, nxt, size), str):
                return nxt
    if size - _LEN.size > bad:
        n = _LEN.unpack_from(data, size - _LEN.size)[0]
        start = size - _LEN.size - n - _HEAD.size
        if start > bad and _POS.size <= n <= RECORD_BYTES_MAX and not isinstance(_record_at(data, start, size), str):
            return start
    return None


def _last_torn_index(data: bytes, pos: int, size: int) -> int | None:
    """The highest index among the records of a cut tail whose framing can still be followed."""
    last = None
    for _ in range(10_000):
        idx = _torn_index(data, pos, size)
        if idx is None or pos + _HEAD.size > size:
            break
        last = idx if last is None else max(last, idx)
        n = _HEAD.unpack_from(data, pos)[0]
        nxt = pos + _HEAD.size + n + _LEN.size
        if n < _POS.size or nxt >= size:
            break
        pos = nxt
    return last


def _scan_v1(path: Path, data: bytes) -> ScanResult:
    """pysyncobj 0.3.17's format: structure only (it has no checksums)."""
    size = len(data)
    if size < _V1_FIRST:
        raise JournalCorrupt(path, 0, "format-1 file header cut short")
    fmt, end = struct.unpack_from("<II", data, 32)
    if fmt != 1:
        raise JournalCorrupt(path, 32, f"unknown pysyncobj journal format {fmt}")
    limit = min(end, size)
    entries: list[tuple[bytes, int, int]] = []
    offsets: list[int] = []
    pos = _V1_FIRST
    while pos < limit:
        if pos + 4 > limit:
            break
        n = _LEN.unpack_from(data, pos)[0]
        if n < 16 or pos + 8 + n > limit or _LEN.unpack_from(data, pos + 4 + n)[0] != n:
            break
        idx, term = _POS.unpack_from(data, pos + 4)
        if entries and (idx != entries[-1][1] + 1 or term < entries[-1][2]):
            break
        entries.append((bytes(data[pos + 20:pos + 4 + n]), idx, term))
        offsets.append(pos)
        pos += n + 8
    if pos >= end:  # what follows the header's end offset is the mmap's zero padding
        return ScanResult(entries, offsets, pos, pos, None, None, 1)
    first = entries[-1][1] + 1 if entries else None
    return ScanResult(entries, offsets, pos, end, first, None, 1)


class _PlainUnpickler(pickle.Unpickler):
    """For format 1's meta file (a pickled dict of ints and strings): builds no objects."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} refused in a journal meta file")


def read_meta(path: Path) -> dict[str, Any]:
    """The meta file (JSON; format 1's pickle read safely); {} when missing or unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        if raw.startswith(b"{"):
            meta = json.loads(raw)
        else:
            import io
            meta = _PlainUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # noqa: BLE001 - a damaged meta file costs the commit index only; term below
        log.warning("journal meta %s unreadable (%s); starting from term 0", path, exc)
        return {}
    return meta if isinstance(meta, dict) else {}


class RaftJournal:
    """pysyncobj's journal, checked at open, with checksummed records; `fsync` makes every change durable."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.meta_path = Path(str(self.path) + ".meta")
        self.fsync = fsync
        self.syncs = 0
        self.sync_seconds = 0.0
        self.appends = 0
        self.cut: dict[str, Any] | None = None  #: what the open cut off, for /api/cluster
        self._fd = -1
        self._entries: list[tuple[bytes, int, int]] = []
        self._offsets = array("Q")
        self._end = HEADER_SIZE
        self._meta = read_meta(self.meta_path)
        self._meta_saved = True
        self._open()

    # ---- open -------------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._rewrite([])
            return
        found = scan(self.path)
        if found.good_end < found.size:
            self._report_cut(found)
        if found.format != FORMAT:
            log.info("journal %s: converting %d entries from format %d (pysyncobj's) to format %d (checksummed)",
                     self.path, len(found.entries), found.format, FORMAT)
            self._rewrite(found.entries)
            return
        self._entries = found.entries
        self._offsets = array("Q", found.offsets)
        self._end = found.good_end
        self._fd = os.open(self.path, os.O_RDWR)
        if found.good_end < found.size:
            os.ftruncate(self._fd, found.good_end)
            self._sync()

    def _report_cut(self, found: ScanResult) -> None:
        dropped = found.size - found.good_end
        if found.dropped_first is not None and found.dropped_last is not None and found.dropped_last >= found.dropped_first:
            span = f"entries {found.dropped_first}-{found.dropped_last}"
        elif found.dropped_first is not None:
            span = f"entries from {found.dropped_first}"
        else:
            span = "no decodable entry"
        last = found.entries[-1][1] if found.entries else None
        self.cut = {"offset": found.good_end, "bytes": dropped, "first": found.dropped_first,
                    "last": found.dropped_last, "kept_last": last}
        log.warning("journal %s: damaged tail cut off at offset %d: %s dropped, %d bytes (last good entry %s); "
                    "the leader re-sends what this replica is missing", self.path, found.good_end, span, dropped, last)

    def _rewrite(self, entries: list[tuple[bytes, int, int]]) -> None:
        """Write `entries` to a new file and rename it into place (atomic), then append to it."""
        tmp = Path(str(self.path) + ".tmp")
        offsets = array("Q")
        parts = [HEADER.pack(MAGIC, FORMAT, 0)]
        pos = HEADER_SIZE
        for command, idx, term in entries:
            rec = encode_record(bytes(command), idx, term)
            offsets.append(pos)
            parts.append(rec)
            pos += len(rec)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(parts), 0)
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.replace(tmp, self.path)
        if self.fsync:
            _fsync_dir(self.path.parent)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._entries = [(bytes(c), i, t) for c, i, t in entries]
        self._offsets = offsets
        self._end = pos

    def _sync(self) -> None:
        if not self.fsync:
            return
        started = time.perf_counter()
        os.fdatasync(self._fd)
        self.syncs += 1
        self.sync_seconds += time.perf_counter() - started

    # ---- what SyncObj calls ---------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        rec = encode_record(command, idx, term)
        _write_all(self._fd, rec, self._end)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(rec)
        self.appends += 1
        self._sync()

    def clear(self) -> None:
        self._truncate(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802,N803 (pysyncobj's names)
        self._truncate(max(0, entryFrom))

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802,N803
        self._rewrite(self._entries[entryTo:])

    def _truncate(self, keep: int) -> None:
        if keep >= len(self._entries):
            return
        end = self._offsets[keep]
        del self._entries[keep:]
        del self._offsets[keep:]
        os.ftruncate(self._fd, end)
        self._end = end
        self._sync()

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Any:
        return iter(self._entries)

    def flush(self) -> None:
        if self._fd >= 0:
            os.fdatasync(self._fd)

    def _destroy(self) -> None:
        if not self._meta_saved:
            self._store_meta()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        self._meta["raftCommitIndex"] = raftCommitIndex
        self._meta_saved = False

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        """The stored commit index, never beyond the last entry (a cut tail, a lost meta write)."""
        stored = int(self._meta.get("raftCommitIndex", 1))
        return max(1, min(stored, self._entries[-1][1])) if self._entries else 1

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802,N803
        # Raft: the term and vote are durable before a message reflecting them is sent
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("votedForNodeId")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if not self._meta_saved:
            self._store_meta()

    def _store_meta(self) -> None:
        tmp = Path(str(self.meta_path) + ".tmp")
        body = json.dumps({"format": FORMAT, **self._meta}, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, body, 0)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.meta_path)
        if self.fsync:
            _fsync_dir(self.meta_path.parent)
        self._meta_saved = True

    # ---- what haco reports ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {"format": FORMAT, "bytes": self._end, "entries": len(self._entries), "fsync": self.fsync,
                "syncs": self.syncs, "sync_seconds": round(self.sync_seconds, 3), "cut": self.cut}


class ApplyGuard:
    """Stops the process (exit 70, one CRITICAL line) when the entry at one index fails to apply
    `failures_max` times running, instead of a retry on every tick forever (a traceback each time,
    the applied index frozen, the replica still answering as healthy). The Raft layer calls
    `failed(index, exc)` when applying the entry at `index` raised and `ok(index)` after one applied.

    haco's own apply never raises (raft_state rejects what it cannot decode, the same way on every
    replica); what raises is the Raft layer's decoding of its own command envelope, i.e. an entry
    damaged in a way its checksum did not catch, or written by a version this one cannot read."""

    def __init__(self, journal_path: Path, failures_max: int = 3) -> None:
        self.journal_path = journal_path
        self.failures_max = failures_max
        self._index, self._count = 0, 0

    def ok(self, index: int) -> None:
        if index >= self._index:
            self._index, self._count = 0, 0

    def failed(self, index: int, exc: BaseException) -> None:
        self._count = self._count + 1 if index == self._index else 1
        self._index = index
        if self._count >= self.failures_max:
            self.stop(index, exc)

    def stop(self, index: int, exc: BaseException) -> None:
        log.critical("entry %d of %s failed to apply %d times (%s: %s); stopping (exit 70) rather than retrying it "
                     "forever: if this replica's copy is damaged, %s", index, self.journal_path, self._count,
                     type(exc).__name__, str(exc)[:200], RECOVERY.replace("stop this replica, ", ""))
        logging.shutdown()
        os._exit(70)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_v1(path: Path, entries: Iterable[tuple[bytes, int, int]]) -> None:
    """A format-1 (pysyncobj 0.3.17) journal, as the previous release wrote it (tests, tools)."""
    body = bytearray()
    for command, idx, term in entries:
        rec = _POS.pack(idx, term) + command
        body += _LEN.pack(len(rec)) + rec + _LEN.pack(len(rec))
    header = (_V1_NAME + b"\0" * (24 - len(_V1_NAME)) + b"0.3.17\0\0" +
              struct.pack("<II", 1, _V1_FIRST + len(body)))
    path.write_bytes(header + bytes(body) + b"\0" * 1024)
