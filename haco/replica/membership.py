"""Live membership changes, one at a time, on the leader (see haco/replica/DESIGN.md, "Membership").

The Raft fork holds the configuration (haco/replica/raft/members.py): each change is one log entry
carrying the whole new configuration, in effect once appended. This module runs the procedure
around those entries, on the asyncio loop of the leading replica:

- add: the replica joins as a *learner* (it receives the log or the leader's snapshot, never votes
  and never counts toward a commit), the leader waits until its match index reaches the leader's
  last index as of the start of the wait, and only then promotes it to voter. A learner that does not
  catch up in time (a wrong Raft password: its handshake is refused; a Raft port the leader cannot
  reach) is removed again: the voters and their quorum never changed.
- remove: refused unless the voters that remain and are caught up are a majority of the new
  configuration; the leader never removes itself: it hands leadership to a caught-up voter first and
  answers NotApplied with the new leader's URL (the client retries there).

Only one procedure runs at a time on a replica (a second is refused), and the fork refuses a
membership entry while another is uncommitted, or before the leader committed an entry of its term.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haco.errors import Conflict, NotApplied, OutcomeUnknown
from haco.replica.raft import FAIL_REASON

if TYPE_CHECKING:
    from haco.replica.node import Replica

__all__ = ["MembershipRefused", "Member", "Membership", "majority"]

log = logging.getLogger(__name__)

CATCH_UP_LAG_MAX = 1000  #: a voter whose match index trails the commit index by more is not caught up
ENTRY_TIMEOUT_S = 10.0  #: a membership entry not committed by then: outcome unknown
LEADER_READY_S = 3.0  #: how long a change waits for a new leader to commit its no-op


class MembershipRefused(Conflict):
    """A membership change that is not allowed now; nothing was changed (or it was undone)."""

    code = "MEMBERSHIP_REFUSED"


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    raft_addr: str
    api_url: str
    voter: bool


def majority(voters: int) -> int:
    return voters // 2 + 1


class Membership:
    """The membership procedures of one replica (loop only)."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self._busy: str | None = None  #: the procedure running here, if any

    # ---- what the API reports ---------------------------------------------------------------

    def members(self) -> list[Member]:
        so = self._replica.raft
        if so is None:
            return []
        return [Member(m[0], m[1], str(m[3].get("url", "")), bool(m[2])) for m in so.members()]

    def view(self) -> dict[str, Any]:
        """The configuration in effect here; on the leader each member's replication progress."""
        replica = self._replica
        so = replica.raft
        progress = so.memberProgress() if so is not None and replica.is_leader() else {}
        rows = []
        for m in self.members():
            row: dict[str, Any] = {"id": m.id, "raft_addr": m.raft_addr, "api_url": m.api_url,
                                   "voter": m.voter, "self": m.id == replica.cfg.id}
            if m.raft_addr in progress:
                match, age, connected = progress[m.raft_addr]
                row.update(match_index=match, last_contact_s=None if age is None else round(age, 3),
                           connected=connected, caught_up=self._caught_up(m.raft_addr, progress))
            elif m.id == replica.cfg.id:
                row.update(match_index=so.lastLogIndex() if so is not None else 0, last_contact_s=0.0,
                           connected=True, caught_up=True)
            rows.append(row)
        return {"members": rows, "leader": replica.leader_id(), "leader_url": replica.leader_url(),
                "in_flight": bool(so is not None and so.membershipInFlight()) or self._busy is not None,
                "busy": self._busy, "learned": bool(so is not None and so.membersLearned()),
                "index": replica.applied_index}

    # ---- the procedures -----------------------------------------------------------------------

    async def add(self, node_id: str, raft_addr: str, api_url: str, *, catch_up_s: float) -> dict[str, Any]:
        """Add a replica as learner, wait for it to catch up, promote it. Raises MembershipRefused,
        NotApplied (not the leader: retry on detail.leader_url) or OutcomeUnknown."""
        await self._begin(f"add {node_id}")
        try:
            current = {m.id: m for m in self.members()}
            existing = current.get(node_id)
            if existing is not None and existing.raft_addr != raft_addr:
                raise MembershipRefused(f"{node_id} is a member with Raft address {existing.raft_addr}",
                                        {"id": node_id})
            if existing is not None and existing.voter:
                return {"id": node_id, "already": True, "members": self.view()["members"]}
            if existing is None:
                taken = next((m.id for m in current.values() if m.raft_addr == raft_addr), None)
                if taken is not None:
                    raise MembershipRefused(f"Raft address {raft_addr} belongs to member {taken}",
                                            {"id": node_id})
                await self._propose("learner", node_id, raft_addr, {"url": api_url})
                log.info("membership: %s added as learner raft=%s url=%s", node_id, raft_addr, api_url)
            started = time.monotonic()
            if not await self._wait_caught_up(raft_addr, catch_up_s):
                await self._propose("remove", node_id)
                log.warning("membership: learner %s did not catch up within %.0fs; removed again", node_id,
                            catch_up_s)
                raise MembershipRefused(
                    f"{node_id} did not catch up within {catch_up_s:g}s as a learner (its Raft port {raft_addr} "
                    "is unreachable from the leader, it runs with another Raft password, or it is too slow); "
                    "it was removed again and the voters never changed", {"id": node_id, "refused": "catch_up"})
            self._check_majority(after=[m for m in self.members() if m.voter] + [current.get(node_id) or Member(
                node_id, raft_addr, api_url, True)], joining=raft_addr)
            await self._propose("promote", node_id)
            log.info("membership: %s promoted to voter after %.1fs of catch-up", node_id,
                     time.monotonic() - started)
            return {"id": node_id, "already": False, "caught_up_s": round(time.monotonic() - started, 2),
                    "members": self.view()["members"]}
        finally:
            self._busy = None

    async def remove(self, node_id: str, *, transfer_timeout_s: float = 3.0) -> dict[str, Any]:
        """Remove a member (a learner or a voter). The leader hands over first when it is the one
        removed, then raises NotApplied naming its successor."""
        await self._begin(f"remove {node_id}")
        try:
            current = {m.id: m for m in self.members()}
            if node_id not in current:
                return {"id": node_id, "already": True, "members": self.view()["members"]}
            replica = self._replica
            if node_id == replica.cfg.id:
                successor = await replica.hand_over(timeout_s=transfer_timeout_s)
                raise NotApplied(f"{node_id} led the cluster: leadership handed over to {successor or 'a peer'}; "
                                 "the removal goes to the new leader", {"leader_url": replica.leader_url(),
                                                                       "retry_after_s": 0.2})
            if current[node_id].voter:
                self._check_majority(after=[m for m in current.values() if m.voter and m.id != node_id])
            await self._propose("remove", node_id)
            log.info("membership: %s removed", node_id)
            return {"id": node_id, "already": False, "members": self.view()["members"]}
        finally:
            self._busy = None

    # ---- helpers -------------------------------------------------------------------------------

    async def _begin(self, what: str) -> None:
        replica = self._replica
        so = replica.raft
        deadline = time.monotonic() + LEADER_READY_S
        while so is not None and replica.is_leader() and not so.leaderReady() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # a new leader commits its no-op first
        if so is None or not replica.is_leader() or not so.leaderReady():
            raise NotApplied("membership changes are made on the leader", {"leader_url": replica.leader_url(),
                                                                          "retry_after_s": 0.2})
        if self._busy is not None:
            raise MembershipRefused(f"another membership change is in progress ({self._busy})", {"busy": self._busy})
        if so.membershipInFlight():
            raise MembershipRefused("another membership change is not committed yet", {})
        self._busy = what

    def _caught_up(self, raft_addr: str, progress: dict[str, tuple[int, float | None, bool]]) -> bool:
        so = self._replica.raft
        entry = progress.get(raft_addr)
        if so is None or entry is None:
            return False
        match, age, connected = entry
        fallback_s = self._replica.cfg.raft.leader_fallback_timeout_s
        return connected and age is not None and age < fallback_s and match >= so.raftCommitIndex - CATCH_UP_LAG_MAX

    def _check_majority(self, after: list[Member], joining: str | None = None) -> None:
        """Refuse unless the caught-up voters of the configuration `after` are a majority of it."""
        so = self._replica.raft
        progress = so.memberProgress() if so is not None else {}
        me = self._replica.cfg.id
        ready = [m.id for m in after if m.id == me or m.raft_addr == joining or self._caught_up(m.raft_addr, progress)]
        if len(ready) < majority(len(after)):
            behind = sorted(m.id for m in after if m.id not in ready)
            raise MembershipRefused(
                f"the change would leave {len(ready)} caught-up voters of {len(after)} (a majority is "
                f"{majority(len(after))}); behind or unreachable: {', '.join(behind)}",
                {"caught_up": sorted(ready), "behind": behind})

    async def _wait_caught_up(self, raft_addr: str, timeout_s: float) -> bool:
        so = self._replica.raft
        deadline = time.monotonic() + timeout_s
        target = so.lastLogIndex() if so is not None else 0
        while time.monotonic() < deadline:
            so = self._replica.raft
            if so is None or not self._replica.is_leader():
                raise NotApplied("leadership was lost during the change; the learner stays a learner until "
                                 "the add is retried", {"leader_url": self._replica.leader_url(),
                                                        "retry_after_s": 1})
            entry = so.memberProgress().get(raft_addr)
            if entry is not None and entry[0] >= target:
                return True
            await asyncio.sleep(0.1)
        return False

    async def _propose(self, op: str, node_id: str, addr: str | None = None, meta: dict[str, str] | None = None
                       ) -> None:
        so = self._replica.raft
        if so is None:
            raise NotApplied("replica is not running")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def on_result(_result: Any, err: int) -> None:  # tick thread, or this one
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err))

        so.changeMembers(op, node_id, addr, meta, on_result)
        try:
            err = await asyncio.wait_for(done, ENTRY_TIMEOUT_S)
        except TimeoutError:
            raise OutcomeUnknown(f"the membership change ({op} {node_id}) was not confirmed in time; "
                                 "see `haco operator members`") from None
        if err == FAIL_REASON.SUCCESS:
            return
        if err == FAIL_REASON.NOT_LEADER:
            raise NotApplied("not the leader", {"leader_url": self._replica.leader_url(), "retry_after_s": 0.2})
        if err == FAIL_REASON.REQUEST_DENIED:
            raise MembershipRefused(f"{op} {node_id} refused: {so.lastMembershipRefusal}", {})
        raise OutcomeUnknown(f"the membership change ({op} {node_id}) ended with Raft error {err}")
