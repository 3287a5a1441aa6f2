"""Snapshot tables of workflows and schedules: groups, schedules, schedule_runs, reruns.

Small next to the jobs table, so rows go through plain Arrow tables. A schema-3 snapshot has none
of these tables: it loads as a state without groups or schedules, with the digest it was saved with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from . import flows
from .flow_records import Group, Schedule, ScheduleRun

if TYPE_CHECKING:
    import duckdb

    from .state import State

_S, _I, _B, _L, _BOOL = pa.string(), pa.int64(), pa.binary(), pa.list_(pa.string()), pa.bool_()
_SQL: Final = {_S: "VARCHAR", _I: "BIGINT", _B: "BLOB", _L: "VARCHAR[]", _BOOL: "BOOLEAN"}
SCHEMAS: Final[dict[str, list[tuple[str, pa.DataType]]]] = {
    "groups": [("group_id", _S), ("seq", _I), ("created_at_ms", _I), ("names", _L), ("job_ids", _L),
               ("batch_hash", _B), ("schedule_id", _S), ("slot_ms", _I)],
    "schedules": [("schedule_id", _S), ("created_at_ms", _I), ("cron", _S), ("tz", _S), ("every_ms", _I),
                  ("overlap", _S), ("catch_up", _S), ("window_ms", _I), ("jitter_ms", _I), ("template", _B),
                  ("paused", _BOOL), ("after_ms", _I), ("last_slot_ms", _I), ("last_group", _S), ("fired", _I),
                  ("skipped", _I)],
    "schedule_runs": [("schedule_id", _S), ("slot_ms", _I), ("group_id", _S), ("outcome", _S), ("at_ms", _I)],
    "reruns": [("job_id", _S), ("reruns", _I)],
}
assert [n for n, _ in SCHEMAS["groups"]] == list(Group.FIELDS)
assert [n for n, _ in SCHEMAS["schedules"]] == list(Schedule.FIELDS)
assert [n for n, _ in SCHEMAS["schedule_runs"]] == list(ScheduleRun.FIELDS)
DDL: Final = "".join(f"CREATE TABLE {t} ({', '.join(f'{n} {_SQL[ty]}' for n, ty in cols)});\n"
                     for t, cols in SCHEMAS.items())
_ORDER: Final = {"groups": "seq", "schedules": "schedule_id", "schedule_runs": "schedule_id, slot_ms",
                 "reruns": "job_id"}


@dataclass(frozen=True, slots=True)
class Captured:
    groups: list[Group]
    schedules: list[Schedule]
    runs: list[ScheduleRun]
    reruns: dict[str, int]

    def digest_part(self) -> int:
        return flows.records_hash(self.groups, self.schedules, self.runs, self.reruns)


def capture(s: State) -> Captured:
    f = s.flows
    return Captured(list(f.groups.values()), list(f.schedules.values()), [r for rs in f.runs.values() for r in rs],
                    dict(f.reruns))


def tables(cap: Captured) -> dict[str, pa.Table]:
    rows: dict[str, list[Any]] = {"groups": cap.groups, "schedules": cap.schedules, "schedule_runs": cap.runs,
                                  "reruns": sorted(cap.reruns.items())}
    out = {}
    for name, cols in SCHEMAS.items():
        records = rows[name]
        out[name] = pa.table([pa.array([r[i] for r in records], type=ty) for i, (_, ty) in enumerate(cols)],
                             schema=pa.schema(cols))
    return out


def load(con: duckdb.DuckDBPyConnection, s: State) -> None:
    """Install the tables (when present) into `s`, whose jobs are loaded; rebuild the derived maps."""
    present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if not present.issuperset(SCHEMAS):
        return
    got = {name: con.execute(f"SELECT * FROM {name} ORDER BY {_ORDER[name]}").fetchall() for name in SCHEMAS}
    for row in got["groups"]:
        g = Group._make(row[0], row[1], row[2], tuple(row[3]), tuple(row[4]), bytes(row[5]), row[6], row[7])
        flows.put_group(s, g)
    for row in got["schedules"]:
        flows.put_schedule(s, Schedule._make(*row[:9], bytes(row[9]), *row[10:]))
    for row in got["schedule_runs"]:
        run = ScheduleRun._make(*row)
        s.flows.runs.setdefault(run.schedule_id, []).append(run)
        s._xor ^= flows.run_hash(run)
    for job_id, n in got["reruns"]:
        s.flows.reruns[job_id] = n
        s._xor ^= flows.rerun_hash(job_id, n)
