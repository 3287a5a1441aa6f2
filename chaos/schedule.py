"""The schedule in every chaos run: `chaos-tick` fires every 2 s with overlap `skip` and catch-up
`all` inside a 60 s window, running a job that often outlasts its slot, so skips happen too.

`start` creates it before the faults begin; `collect` writes what the cluster recorded after
the drain (a `schedule` record); `checkers.schedule_slots` judges that record against the jobs.
"""

from __future__ import annotations

from typing import Any

from haco.client import HacoClient

from .history import HistoryWriter, now

SCHEDULE_ID = "chaos-tick"
EVERY_S = 2.0
WINDOW_S = 60.0
BODY: dict[str, Any] = {"id": SCHEDULE_ID, "every": f"{EVERY_S:g}s", "overlap": "skip", "catch_up": "all",
                        "catch_up_window": f"{WINDOW_S:g}s",
                        "job": {"type": "shell", "payload": {"argv": ["sleep", "1.5"]}, "timeout_s": 30,
                                "max_retries": 2, "backoff_s": 0.2}}


async def start(client: HacoClient, history: HistoryWriter) -> None:
    mono, wall = now()
    answer = await client.create_schedule(BODY)
    history.write("schedule_created", schedule_id=SCHEDULE_ID, mono=mono, wall=wall, answer=answer)


async def pause(client: HacoClient, history: HistoryWriter) -> int:
    """Stop new slots before the drain (it waits for every job to end); returns the pause's index."""
    mono, wall = now()
    answer = await client.pause_schedule(SCHEDULE_ID)
    history.write("schedule_paused", schedule_id=SCHEDULE_ID, mono=mono, wall=wall, index=answer.get("index"))
    return int(answer.get("index") or 0)


async def collect(client: HacoClient, history: HistoryWriter, index: int) -> None:
    """The runs the cluster recorded and the groups they made, as the leader holds them."""
    shown = await client.request("GET", f"/api/schedules/{SCHEDULE_ID}",
                                 params={"runs": 1000, "min_index": index, "consistency": "leader"})
    groups = await client.request("GET", "/api/groups", params={"schedule": SCHEDULE_ID, "limit": 1000,
                                                                "min_index": index})
    history.write("schedule", schedule=shown["schedule"], groups=groups["groups"], mono=now()[0],
                  every_ms=int(EVERY_S * 1000), window_ms=int(WINDOW_S * 1000))
