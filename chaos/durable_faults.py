"""The journal faults of the nemesis: damage a stopped follower's raft.journal, restart it and
watch what the docs promise (docs/operations.md, Durability).

- a damaged tail (`journal_tail`): the replica starts, cuts the tail with one warning, and catches
  up with the leader;
- a flipped bit in the middle (`journal_flip`): the replica exits 70; the journal is moved away
  (as the docs say: keep raft.journal.meta), and the restarted replica rebuilds from its peers.

The fault record carries what was seen (`damage`, `detail`, `exit_code`, `cut_logged`,
`caught_up_s`, `rejoined`); `durability_checks.journal_damage` judges it. The journal is changed
only while its replica is down, and the fault ends only once the replica caught up with the
leader's commit index, so the next fault never meets a replica that forgot acknowledged entries.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

from .history import now
from .journal_damage import TAIL_DAMAGES, damage

if TYPE_CHECKING:
    from .nemesis import Nemesis

__all__ = ["TAIL_DAMAGES", "journal_fault"]

EXIT_WAIT_S = 30.0  #: a replica with a corrupt journal must have exited by then
CATCH_UP_S = 60.0
JOURNAL = "raft.journal"


async def journal_fault(nem: Nemesis, fault: str, i: int, kind: str) -> None:
    cluster = nem.cluster
    r = cluster.replicas[i]
    await asyncio.to_thread(cluster.signal_replica, i, signal.SIGKILL)
    path = r.data_dir / JOURNAL
    detail = await asyncio.to_thread(damage, path, kind, nem.rng) if path.exists() else None
    rec: dict[str, Any] = {**nem._record(fault, r.id), "damage": kind, "detail": detail}
    mark = r.log_path.stat().st_size if r.log_path.exists() else 0
    await asyncio.to_thread(cluster.start_replica, i)
    if detail is not None and fault == "journal_flip":
        rec["exit_code"] = await asyncio.to_thread(_exit_code, r.proc, EXIT_WAIT_S)
        if rec["exit_code"] is not None:
            moved = path.with_name(f"{JOURNAL}.damaged-{now()[1]:.0f}")
            await asyncio.to_thread(path.rename, moved)
            await asyncio.to_thread(cluster.start_replica, i)
    rec["caught_up_s"] = await _caught_up(nem, i, CATCH_UP_S)
    rec["rejoined"] = r.alive() and rec["caught_up_s"] is not None
    if detail is not None and fault == "journal_tail":
        text = await asyncio.to_thread(_log_since, r.log_path, mark)
        rec["cut_logged"] = text.count("damaged tail cut off")
    nem._healed(rec)


def _exit_code(proc: Any, within_s: float) -> int | None:
    if proc is None:
        return None
    try:
        return int(proc.wait(timeout=within_s))
    except Exception:  # still running: the check fails on exit_code None
        return None


def _log_since(path: Any, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def _caught_up(nem: Nemesis, i: int, timeout_s: float) -> float | None:
    """Seconds until replica i applied the leader's commit index as of its restart; None on timeout."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    target: int | None = None
    while loop.time() - start < timeout_s:
        statuses = await nem.client.status(timeout_s=2.0)
        infos = [s.info or {} for s in statuses]
        if target is None:
            leaders = [inf for inf in infos if inf.get("role") == "leader"]
            target = int(leaders[0]["commit_index"]) if leaders else None
        mine = infos[i].get("applied_index")
        if target is not None and mine is not None and int(mine) >= target and nem.cluster.replicas[i].alive():
            return round(loop.time() - start, 2)
        await asyncio.sleep(0.3)
    return None
