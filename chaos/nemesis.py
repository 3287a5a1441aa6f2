"""The nemesis: a seeded fault schedule, run one fault at a time against a ChaosCluster.

Each fault waits for a healthy cluster (every replica up and agreeing on one leader), is recorded
in the history (`fault` with its monotonic time, target and heal time), undone, and followed by
a seeded quiet gap. Faults are never combined, so a wipe always happens while the others are
healthy (a wiped voter forgets its vote) and every fault leaves a majority alive except the
full restart, which kills and restarts them all.

Membership faults (`member_remove`, `leader_remove`) take a follower, or the leader, out of the
configuration through `DELETE /api/members` (the leader hands over first), stop it, wipe it and
start it again with `--join`: it comes back as a learner, catches up and is promoted, so the run
ends with the replicas it started with. Adds are exercised by every rejoin.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from haco.client import HacoClient
from haco.errors import HacoError

from . import durable_faults
from .history import HistoryWriter, now
from .procs import ChaosCluster

__all__ = ["FAULTS", "ClusterStuck", "Nemesis", "NemesisConfig", "schedule"]

FAULTS = ("leader_kill", "follower_kill", "leader_pause", "partition", "partial_partition", "full_restart",
          "wipe", "worker_kill", "worker_pause", "member_remove", "leader_remove", "journal_tail", "journal_flip",
          "worker_restart")
UNHEALTHY_MAX = 3  #: healthy-timeouts (over the whole run) before the run gives up


class ClusterStuck(Exception):
    """The cluster did not recover: the run stops and fails instead of waiting for ever."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NemesisConfig:
    faults: tuple[str, ...]
    count: int  #: faults in the schedule (at least one of each kind, and min_leader_kills)
    min_leader_kills: int = 0
    seed: int = 0
    duration_s: float = 60.0  #: no new fault starts after this
    election_s: float = 0.6  #: the replicas' election timeout max
    worker_lost_s: float = 3.0  #: the replicas' HACO_WORKER_LOST_S
    healthy_timeout_s: float = 45.0


def schedule(faults: tuple[str, ...], count: int, min_leader_kills: int, seed: int) -> list[str]:
    """Every kind once, leader kills up to the minimum, the rest drawn from the mix; seeded order."""
    rng = random.Random(seed)
    plan = list(faults)
    if "leader_kill" in faults or min_leader_kills:
        plan += ["leader_kill"] * max(0, min_leader_kills - plan.count("leader_kill"))
    while len(plan) < count:
        plan.append(rng.choice(faults))
    rng.shuffle(plan)
    return plan


class Nemesis:
    def __init__(self, cluster: ChaosCluster, history: HistoryWriter, cfg: NemesisConfig) -> None:
        self.cluster = cluster
        self.history = history
        self.cfg = cfg
        self.rng = random.Random(cfg.seed + 7)
        self.plan = schedule(cfg.faults, cfg.count, cfg.min_leader_kills, cfg.seed)
        self.done: Counter[str] = Counter()
        self.unhealthy = 0  #: times the cluster did not become healthy in time before a fault
        self.client = HacoClient(cluster.urls)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.cfg.duration_s
        actions: dict[str, Callable[[], Awaitable[bool | None]]] = {
            "leader_kill": self._leader_kill, "follower_kill": self._follower_kill,
            "leader_pause": self._leader_pause, "partition": self._partition,
            "partial_partition": self._partial_partition, "full_restart": self._full_restart,
            "wipe": self._wipe, "worker_kill": self._worker_kill, "worker_pause": self._worker_pause,
            "member_remove": self._member_remove, "leader_remove": self._leader_remove,
            "journal_tail": self._journal_tail, "journal_flip": self._journal_flip,
            "worker_restart": self._worker_restart}
        for kind in self.plan:
            if loop.time() >= end:
                break
            await self.healthy()
            if await actions[kind]() is not False:  # False: refused, nothing happened (in the history)
                self.done[kind] += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        await self.healthy()  # the workload sees the cluster recover from the last fault too
        await asyncio.sleep(2.0)

    async def close(self) -> None:
        await self.client.close()

    # ---- cluster views --------------------------------------------------------------------

    async def roles(self) -> dict[int, str] | None:
        """Index -> role of every replica, when all answer and agree on a leader; else None."""
        statuses = await self.client.status(timeout_s=2.0)
        if any(not s.reachable for s in statuses):
            return None
        infos = [s.info or {} for s in statuses]
        leaders = {i.get("leader") for i in infos}
        roles = {n: str(i.get("role")) for n, i in enumerate(infos)}
        if len(leaders) != 1 or None in leaders or list(roles.values()).count("leader") != 1:
            return None
        return roles

    async def healthy(self) -> dict[int, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.healthy_timeout_s
        while True:
            await self._ensure_running()
            roles = await self.roles()
            if roles is not None:
                return roles
            if loop.time() >= deadline:
                self.unhealthy += 1
                self.history.write("unhealthy", mono=now()[0])
                if self.unhealthy >= UNHEALTHY_MAX:
                    raise ClusterStuck(f"no agreed leader with every replica up after {self.unhealthy} waits "
                                       f"of {self.cfg.healthy_timeout_s:g} s")
                deadline = loop.time() + self.cfg.healthy_timeout_s
            await asyncio.sleep(0.2)

    async def _ensure_running(self) -> None:
        def start() -> None:
            self.cluster.set_blocks([])
            for i, r in enumerate(self.cluster.replicas):
                if not r.alive():
                    self.cluster.start_replica(i)
            for wid in self.cluster.worker_ids:
                self.cluster.start_worker(wid)
        await asyncio.to_thread(start)

    async def _leader(self) -> int:
        roles = await self.healthy()
        return next(i for i, role in roles.items() if role == "leader")

    def _record(self, kind: str, target: str) -> dict[str, object]:
        """Called once the fault is in place (process dead or stopped, blocklist written)."""
        mono, wall = now()
        return {"fault": kind, "target": target, "mono": mono, "wall": wall}

    def _healed(self, record: dict[str, object]) -> None:
        self.history.write("fault", **record, heal_mono=now()[0])

    # ---- faults ----------------------------------------------------------------------------

    async def _kill_and_restart(self, kind: str, i: int, *, wipe: bool = False) -> None:
        await asyncio.to_thread(self.cluster.signal_replica, i, signal.SIGKILL)
        rec = self._record(kind, self.cluster.replicas[i].id)
        if wipe:
            await asyncio.to_thread(self.cluster.wipe, i)
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        await asyncio.to_thread(self.cluster.start_replica, i)
        self._healed(rec)

    async def _leader_kill(self) -> None:
        await self._kill_and_restart("leader_kill", await self._leader())

    async def _follower_kill(self) -> None:
        leader = await self._leader()
        await self._kill_and_restart("follower_kill", self._other(leader))

    async def _wipe(self) -> None:
        leader = await self._leader()
        await self._kill_and_restart("wipe", self._other(leader), wipe=True)

    async def _member_remove(self) -> bool:
        leader = await self._leader()
        return await self._remove_and_rejoin("member_remove", self._other(leader))

    async def _leader_remove(self) -> bool:
        return await self._remove_and_rejoin("leader_remove", await self._leader())

    async def _remove_and_rejoin(self, kind: str, i: int) -> bool:
        """Remove replica i from the configuration, stop and wipe it, start it with --join and wait
        (bounded) until it is a voter again."""
        rid = self.cluster.replicas[i].id
        try:
            await self.client.remove_replica(rid)
        except HacoError as exc:  # refused (a majority not caught up): nothing changed, nothing to undo
            self.history.write("fault_refused", fault=kind, target=rid, reason=exc.message, mono=now()[0])
            return False
        rec = self._record(kind, rid)
        await asyncio.to_thread(self.cluster.signal_replica, i, signal.SIGKILL)
        await asyncio.to_thread(self.cluster.wipe, i)
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        await asyncio.to_thread(self.cluster.start_replica, i, join=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.healthy_timeout_s
        while loop.time() < deadline:
            try:
                view = await self.client.members()
                if any(m["id"] == rid and m["voter"] for m in view["members"]):
                    break
            except HacoError:
                pass
            await asyncio.sleep(0.2)
        else:
            raise ClusterStuck(f"{rid} did not rejoin as a voter within {self.cfg.healthy_timeout_s:g} s")
        self._healed(rec)
        return True

    def _other(self, leader: int, *skip: int) -> int:
        return self.rng.choice([i for i in range(len(self.cluster.replicas)) if i != leader and i not in skip])

    async def _leader_pause(self) -> None:
        i = await self._leader()
        await asyncio.to_thread(self.cluster.signal_replica, i, signal.SIGSTOP)
        rec = self._record("leader_pause", self.cluster.replicas[i].id)
        await asyncio.sleep(self.cfg.election_s * 2 + self.rng.uniform(1.0, 3.0))  # a new leader takes over
        await asyncio.to_thread(self.cluster.signal_replica, i, signal.SIGCONT)  # the deposed one comes back
        self._healed(rec)

    async def _partition(self) -> None:
        i = await self._leader()
        others = [j for j in range(len(self.cluster.replicas)) if j != i]
        await asyncio.to_thread(self.cluster.set_blocks, [(i, j) for j in others])
        rec = self._record("partition", self.cluster.replicas[i].id)
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await asyncio.to_thread(self.cluster.set_blocks, [])
        self._healed(rec)

    async def _partial_partition(self) -> None:
        """The leader and one follower lose each other; both still reach the rest."""
        a = await self._leader()
        b = self._other(a)
        await asyncio.to_thread(self.cluster.set_blocks, [(a, b)])
        rec = self._record("partial_partition", f"{self.cluster.replicas[a].id}-{self.cluster.replicas[b].id}")
        await asyncio.sleep(self.rng.uniform(2.0, 5.0))
        await asyncio.to_thread(self.cluster.set_blocks, [])
        self._healed(rec)

    async def _compaction_started(self, timeout_s: float) -> str | None:
        """Wait (bounded) for a replica to log a snapshot capture: its DuckDB dump is being written
        in the background right now. Returns that replica's id, or None when none began in time."""
        logs = [(r.id, r.log_path) for r in self.cluster.replicas]
        offsets = {rid: path.stat().st_size if path.exists() else 0 for rid, path in logs}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            for rid, path in logs:
                with open(path, "rb") as f:
                    f.seek(offsets[rid])
                    fresh = f.read()
                offsets[rid] += len(fresh)
                if b"snapshot capture" in fresh:
                    return rid
            await asyncio.sleep(0.02)
        return None

    async def _full_restart(self) -> None:
        """SIGKILL every replica, timed (when one starts within 10 s) to hit a log compaction."""
        compacting = await self._compaction_started(10.0)
        ids = [r.id for r in self.cluster.replicas]
        order = sorted(range(len(ids)), key=lambda i: ids[i] != compacting)  # the compacting one first
        await asyncio.to_thread(self.cluster.kill_replicas, order)
        rec = self._record("full_restart", "all" if compacting is None else f"all, {compacting} compacting")
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        await self._ensure_running()
        self._healed(rec)

    async def _busy_worker(self) -> str:
        """A worker running a shell job (one that takes a while) now, if one does within 10 s; else
        any worker. A noop finishes before a fault could catch it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while loop.time() < deadline:
            try:
                workers = await self.client.workers()
                busy = [(w["worker_id"], j) for w in workers if w["worker_id"] in self.cluster.worker_ids
                        and w.get("status") == "active" for j in w.get("running") or ()]
                self.rng.shuffle(busy)
                for wid, job_id in busy[:8]:
                    job = await self.client.get(job_id)
                    if job.get("type") == "shell" and job.get("status") == "running" and job.get("worker_id") == wid:
                        return str(wid)
            except Exception:  # any replica hiccup: look again
                pass
            await asyncio.sleep(0.2)
        return self.rng.choice(self.cluster.worker_ids)

    async def _until_lost(self, wid: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.worker_lost_s + 30.0
        while loop.time() < deadline:
            try:
                if (await self.client.worker(wid)).get("status") == "lost":
                    return
            except Exception:  # a replica hiccup: ask again
                pass
            await asyncio.sleep(0.3)

    async def _worker_kill(self) -> None:
        wid = await self._busy_worker()
        await asyncio.to_thread(self.cluster.signal_worker, wid, signal.SIGKILL)
        rec = self._record("worker_kill", wid)
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        await asyncio.to_thread(self.cluster.start_worker, wid)
        self._healed(rec)

    async def _journal_tail(self) -> None:
        """SIGKILL a follower, damage its journal's tail (seeded: torn last record, cut across
        records, garbage after the end), restart it: it must cut the tail and catch up."""
        i = self._other(await self._leader())
        kind = self.rng.choice(durable_faults.TAIL_DAMAGES)
        await durable_faults.journal_fault(self, "journal_tail", i, kind)

    async def _journal_flip(self) -> None:
        """SIGKILL a follower and flip a bit in the middle of its journal: it must refuse to start
        (exit 70); moved away as the docs say, the journal is rebuilt from the peers."""
        i = self._other(await self._leader())
        await durable_faults.journal_fault(self, "journal_flip", i, "flip_middle")

    async def _worker_restart(self) -> None:
        """SIGKILL a busy worker's agent and restart it: at once (it re-adopts its attempts), or
        once the leader declared it lost (its attempts are requeued; their processes must be
        killed on its return). The executions check counts that no attempt ran twice."""
        wid = await self._busy_worker()
        lost = self.rng.random() < 0.5
        await asyncio.to_thread(self.cluster.signal_worker, wid, signal.SIGKILL)
        rec = self._record("worker_restart", f"{wid}, {'after lost' if lost else 'at once'}")
        if lost:
            await self._until_lost(wid)
        else:
            await asyncio.sleep(self.rng.uniform(0.1, 1.0))
        await asyncio.to_thread(self.cluster.start_worker, wid)
        self._healed(rec)

    async def _worker_pause(self) -> None:
        """SIGSTOP the agent (its job runs on and ends) past worker_lost_s: the job is requeued, and
        the agent's report, sent once resumed, names a stale attempt and must be refused."""
        wid = await self._busy_worker()
        await asyncio.to_thread(self.cluster.signal_worker, wid, signal.SIGSTOP, group=False)
        rec = self._record("worker_pause", wid)
        await self._until_lost(wid)  # its websocket times out first, then worker_lost_s passes
        await asyncio.sleep(self.rng.uniform(0.2, 1.0))
        await asyncio.to_thread(self.cluster.signal_worker, wid, signal.SIGCONT, group=False)
        self._healed(rec)
