"""A saved snapshot file, offline: `haco snapshot inspect` and `haco snapshot restore`.

`inspect(path)` reads the file's meta (schema version, Raft index and term, saved digest), counts
the rows of every table, and verifies it: the state is rebuilt from the tables with the replica's
own loader (`raft_state.snapshot.load`, which recomputes every record hash and compares the
digest with the saved one), every job spec must hash to the spec hash its record holds (the digest
covers a spec only through that hash), and its raft data must name the same index and term. The digest is a
corruption check (XXH3), not a signature: it catches a damaged, truncated or hand-edited file,
not someone who rewrites the tables and the digest together.

`restore(path, data_dir)` makes `data_dir` what a replica's data dir is right after it compacted
at that index: `snapshot.duckdb` (the file, copied and synced) and a journal holding the dump's
last two entries, with commit index and term at the dump's. A replica started on it loads the
dump, applies nothing below that index, and votes and elects from that term on; every replica of
the cluster gets the same (see docs/operations.md, Backup and restore, for why all of them).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import msgpack

from raft_state import State, snapshot
from raft_state.digest import spec_digest

from haco.errors import HacoError
from haco.replica.journal import RaftJournal
from haco.replica.raft import legacy

#: what a replica keeps in its data dir; a restore moves any of them aside (--force) first
REPLICA_FILES: Final = ("snapshot.duckdb", "snapshot.duckdb.wal", "raft.journal", "raft.journal.meta",
                        "results.duckdb", "results.duckdb.wal")


class SnapshotRefused(HacoError):
    """The file does not verify, or the data dir is not one to restore into."""

    code = "SNAPSHOT_REFUSED"
    status = 400


@dataclass(frozen=True, slots=True)
class Inspected:
    path: str
    bytes: int
    schema_version: int | None = None
    raft_index: int | None = None
    raft_term: int | None = None
    digest: str | None = None  #: as saved in the file's meta
    rebuilt_digest: str | None = None  #: recomputed from the tables (None: the rebuild failed)
    counts: dict[str, int] = field(default_factory=dict)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    problem: str | None = None  #: why it does not verify

    @property
    def verified(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "verified": self.verified, "problem": self.problem,
                "schema_version": self.schema_version, "raft_index": self.raft_index, "raft_term": self.raft_term,
                "digest": self.digest, "rebuilt_digest": self.rebuilt_digest, "counts": self.counts,
                "jobs_by_status": self.jobs_by_status}


def _meta_and_counts(path: Path) -> tuple[dict[str, Any], bytes, dict[str, int], dict[str, int]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = dict(con.execute("SELECT k, v FROM meta").fetchall())
        raft_data = bytes(rows.pop("raft_data", b""))
        meta = {k: msgpack.unpackb(v, raw=False) for k, v in rows.items()}
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()]
        counts = {t: int(con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]) for t in tables}
        by_status = dict(con.execute("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status").fetchall())
    finally:
        con.close()
    return meta, raft_data, counts, {str(k): int(v) for k, v in by_status.items()}


def inspect(path: str | os.PathLike[str]) -> Inspected:
    """Read and verify a snapshot file; never raises for a bad file (`problem` says what is wrong)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        return Inspected(str(p), 0, problem=f"cannot read {p}: {exc.strerror}")
    try:
        meta, raft_data, counts, by_status = _meta_and_counts(p)
    except Exception as exc:  # not a DuckDB file, a truncated one, no meta table
        return Inspected(str(p), size, problem=f"not a readable snapshot: {type(exc).__name__}: {exc}")
    saved = meta.get("digest")
    base = Inspected(str(p), size, schema_version=meta.get("schema_version"), raft_index=meta.get("raft_index"),
                     raft_term=meta.get("raft_term"), digest=f"{saved:016x}" if isinstance(saved, int) else None,
                     counts=counts, jobs_by_status=by_status)
    try:
        loaded = snapshot.load(p)
    except snapshot.SnapshotError as exc:
        return _with(base, problem=str(exc))
    rebuilt = f"{loaded.digest:016x}"
    spec_problem = _specs_unhashed(loaded.state)
    if spec_problem:
        return _with(base, rebuilt_digest=rebuilt, problem=spec_problem)
    try:
        (_, last_index, last_term), _, _ = legacy.unpack_raft_data(raft_data, local=False)[0]
    except Exception as exc:
        return _with(base, rebuilt_digest=rebuilt, problem=f"its raft data is unreadable: {exc}")
    if (last_index, last_term) != (loaded.raft_index, loaded.raft_term):
        return _with(base, rebuilt_digest=rebuilt, problem=f"its raft data names index {last_index} term "
                     f"{last_term}, its meta index {loaded.raft_index} term {loaded.raft_term}")
    return _with(base, rebuilt_digest=rebuilt)


def _specs_unhashed(state: State) -> str | None:
    """The digest hashes each job's spec through its `spec_hash` (computed once, at submit), so a
    spec column changed in the file leaves the digest whole: recompute every spec's hash. A
    workflow job submitted with a delay has the delay in its hash too, which the file no longer
    holds once the job ran; those are skipped."""
    group_of = state.flows.group_of
    bad = [j.job_id for j in state.jobs.values() if j.spec_hash != spec_digest(j.spec) and j.job_id not in group_of]
    if not bad:
        return None
    return f"{len(bad)} job specs do not match their hashes (first: {bad[0]})"


def _with(base: Inspected, **changes: Any) -> Inspected:
    return Inspected(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


@dataclass(frozen=True, slots=True)
class Restored:
    data_dir: str
    raft_index: int
    raft_term: int
    digest: str
    jobs: int
    moved_aside: str | None  #: where the data dir's previous files went (--force)


def restore(path: str | os.PathLike[str], data_dir: str | os.PathLike[str], *, force: bool = False) -> Restored:
    """Prepare `data_dir` to start a replica from the snapshot at `path`. The replica must be stopped.

    Raises SnapshotRefused when the file does not verify, or when `data_dir` holds a replica's
    files and `force` is not set (with it they are moved to `before-restore-<time>/` in it)."""
    found = inspect(path)
    if not found.verified:
        raise SnapshotRefused(f"{path} does not verify, nothing restored: {found.problem}")
    assert found.raft_index is not None and found.raft_term is not None and found.rebuilt_digest is not None
    d = Path(data_dir)
    present = [name for name in REPLICA_FILES if (d / name).exists()]
    moved = None
    if present and not force:
        raise SnapshotRefused(f"{d} holds a replica's data ({', '.join(present)}); stop that replica and "
                              "add --force to move those files aside")
    d.mkdir(parents=True, exist_ok=True)
    if present:
        aside = d / time.strftime("before-restore-%Y%m%dT%H%M%SZ", time.gmtime())
        aside.mkdir()
        for name in present:
            os.replace(d / name, aside / name)
        moved = str(aside)
    con = duckdb.connect(str(path), read_only=True)
    try:
        blob = bytes(dict(con.execute("SELECT k, v FROM meta WHERE k = 'raft_data'").fetchall())["raft_data"])
    finally:
        con.close()
    (last, prev, _), _ = legacy.unpack_raft_data(blob, local=False)
    copying = d / "snapshot.duckdb.restoring"  # a leftover of a crash here is removed at replica start
    shutil.copyfile(path, copying)
    _fsync(copying)
    os.replace(copying, d / "snapshot.duckdb")
    journal = RaftJournal(d / "raft.journal", fsync=True)
    try:
        journal.add(bytes(prev[0]), int(prev[1]), int(prev[2]))
        journal.add(bytes(last[0]), int(last[1]), int(last[2]))
        journal.setRaftCommitIndex(int(last[1]))
        journal.setCurrentTerm(int(last[2]), None)  # stores the meta file, synced
    finally:
        journal._destroy()
    _fsync(d)
    return Restored(str(d), found.raft_index, found.raft_term, found.rebuilt_digest,
                    sum(found.jobs_by_status.values()), moved)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
