"""The leader's side of schedules and delayed jobs: which slots to fire now, and when a Tick is due.

`due_fires` is pure (state, time and an id source in; commands out); `Firing.round` proposes them
one per schedule per round, oldest slot first. Apply checks each again (due, not fired, inside
the window), so two leaders proposing the same slot fire it once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from raft_state import Accepted, State
from raft_state.flow_commands import FLOWS_SINCE, FireSchedule
from raft_state.schedules import decode_template, next_fire

from haco.replica.node import Replica

log = logging.getLogger(__name__)
PLAN_EVERY_S = 0.1  #: how often the leader looks for due slots and ended delays
FIRES_PER_ROUND_MAX = 64


def random_id() -> str:
    return os.urandom(16).hex()


def due_fires(state: State, now_ms: int, new_id: Callable[[], str] = random_id) -> list[FireSchedule]:
    """One FireSchedule per schedule with a due slot, in schedule id order."""
    if state.cluster_version < FLOWS_SINCE:
        return []
    out: list[FireSchedule] = []
    for schedule_id in sorted(state.flows.schedules):
        sc = state.flows.schedules[schedule_id]
        slot = next_fire(sc, now_ms)
        if slot is None:
            continue
        template = decode_template(sc.template) or []
        out.append(FireSchedule(now_ms, schedule_id, slot, tuple(new_id() for _ in template)))
        if len(out) >= FIRES_PER_ROUND_MAX:
            break
    return out


def delay_ended(state: State, now_ms: int) -> bool:
    """A delayed start or a backoff ended by leader time: a Tick makes the job ready now."""
    backoff = state._backoff
    return bool(backoff) and backoff[0][0] <= now_ms


class Firing:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self._last = 0.0
        self.fired = 0

    async def round(self, now_ms: int) -> tuple[bool, bool]:
        """Propose due slots; answers (fired any, a Tick is due for ended delays)."""
        mono = time.monotonic()
        if mono - self._last < PLAN_EVERY_S:
            return False, False
        self._last = mono
        state = self.replica.state
        fired = False
        for cmd in due_fires(state, now_ms):
            _, outcome = await self.replica.propose(cmd)
            if isinstance(outcome, Accepted) and not outcome.already:
                self.fired += 1
                fired = True
                log.info("schedule fired schedule=%s slot_ms=%d outcome=%s", cmd.schedule_id, cmd.slot_ms,
                         outcome.value.get("outcome") if isinstance(outcome.value, dict) else None)
            elif not isinstance(outcome, Accepted):
                log.debug("schedule slot refused schedule=%s slot_ms=%d code=%s", cmd.schedule_id, cmd.slot_ms,
                          outcome.code)
        return fired, delay_ended(state, now_ms)
