"""Submit-time executor checks (payload schemas, known types) and the worker's plugins field: how it
is validated, placed on, explained, encoded, hashed and snapshotted without disturbing old data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import msgpack
import pytest
import xxhash

from raft_state import (MarkWorkerLost, Rejected, RejectCode, SetClusterVersion, SpecError, State, Tick, encode,
                        parse_job, queries, snapshot)
from raft_state.codec import decode
from raft_state.digest import worker_hash
from raft_state.payloads import offers
from tests.raft_state.state_helpers import register, spec, submit

T0 = 1_000_000


def refusal(job: dict[str, Any], plugins: dict[str, int] | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_job(job, plugins if plugins is not None else {})
    return info.value


@pytest.mark.parametrize(("job", "field", "words"), [
    ({"type": "shell"}, "payload", "required for a shell job"),
    ({"type": "shell", "payload": {"argv": "echo x"}}, "payload.argv", "list of strings, got string 'echo x'"),
    ({"type": "shell", "payload": {"argv": []}}, "payload.argv", "non-empty"),
    ({"type": "shell", "payload": {"argv": ["true"], "shell": True}}, "payload.shell", "unknown field"),
    ({"type": "shell", "payload": {"argv": ["true"], "env": {"A": 1}}}, "payload.env", "string values"),
    ({"type": "shell", "payload": ["echo"]}, "payload", "must be an object"),
    ({"type": "python", "payload": {"function": "math.sqrt"}}, "payload.function", "'module:function'"),
    ({"type": "python", "payload": {"function": "m:f", "args": {}}}, "payload.args", "must be a list"),
    ({"type": "pytest", "payload": {}}, "payload.path", "non-empty string"),
    ({"type": "pytest", "payload": {"path": "t", "args": "-x"}}, "payload.args", "list of strings"),
    ({"type": "benchmark", "payload": {"argv": ["true"], "function": "m:f"}}, "payload", "exactly one of"),
    ({"type": "benchmark", "payload": {"argv": ["true"], "repeat": 0}}, "payload.repeat", "from 1 to 10000"),
])
def test_builtin_payloads_are_checked_naming_the_field(job: dict[str, Any], field: str, words: str) -> None:
    exc = refusal(job)
    assert (exc.code, exc.field) == ("INVALID", field) and words in exc.message, exc


def test_good_payloads_and_any_noop_payload_pass() -> None:
    for job in ({"type": "shell", "payload": {"argv": ["echo", "x"], "env": {"A": "1"}, "cwd": "sub"}},
                {"type": "python", "payload": {"function": "math:sqrt", "args": [16]}},
                {"type": "pytest", "payload": {"path": "tests", "args": ["-x"]}},
                {"type": "benchmark", "payload": {"function": "math:sqrt", "args": [2], "repeat": 3, "warmup": 0}},
                {"type": "noop"}, {"type": "noop", "payload": [1, {"x": None}]}):
        parse_job(job, {})


def test_unknown_type_is_unknown_executor_listing_the_known_ones() -> None:
    exc = refusal({"type": "docker"}, {"gpu_render": 1})
    assert (exc.code, exc.field) == ("UNKNOWN_EXECUTOR", "type")
    assert "benchmark, noop, pytest, python, shell, gpu_render" in exc.message
    spec_, _ = parse_job({"type": "gpu_render", "payload": {"anything": "goes"}}, {"gpu_render": 1})
    assert spec_.type == "gpu_render"
    parse_job({"type": "docker"})  # without the cluster's view (tools, fuzz oracles): shape checks only


def test_worker_hash_and_encoding_at_the_default_are_what_older_code_made() -> None:
    cmd = register("w1", at_ms=T0)
    entry = encode(cmd)
    fields = msgpack.unpackb(entry)[1][0]
    assert len(fields) == 1 + 9  # tag + the nine fields older code knew: plugins left out
    assert decode(entry) == [cmd]
    with_plugins = replace(cmd, plugins=("gpu_render",))
    assert decode(encode(with_plugins)) == [with_plugins]
    s = State()
    s.apply(cmd)
    w = s.workers["w1"]
    old_style = [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb, w.cuda_compute,
                 w.cpus, str(w.status), list(w.running), w.registered_at_ms, w.info]
    assert worker_hash(w) == xxhash.xxh3_64_intdigest(msgpack.packb(old_style, use_bin_type=True), ord("W"))


def _plugin_worker(worker_id: str, *plugins: str) -> Any:
    return replace(register(worker_id, at_ms=T0), plugins=plugins)


def test_plugins_need_cluster_version_3_and_feed_the_offers_index() -> None:
    s = State()
    s.apply(Tick(T0))
    refused = s.apply(_plugin_worker("w1", "gpu_render"))
    assert isinstance(refused, Rejected) and refused.code is RejectCode.VERSION_GATED and not s.workers
    s.apply(SetClusterVersion(T0, 3))
    s.apply(_plugin_worker("w1", "gpu_render", "gpu_render"))
    s.apply(_plugin_worker("w2", "gpu_render", "etl"))
    assert s.workers["w1"].plugins == ("gpu_render",) and s.plugin_offers == {"gpu_render": 2, "etl": 1}
    s.apply(register("w2", at_ms=T0))  # re-registers without plugins
    assert s.plugin_offers == {"gpu_render": 1}
    assert s.digest() == s.full_digest()


def test_pending_reason_says_no_live_worker_offers_the_type() -> None:
    s = State()
    s.apply(Tick(T0))
    s.apply(SetClusterVersion(T0, 3))
    s.apply(register("plain", at_ms=T0))
    s.apply(_plugin_worker("render", "gpu_render"))
    s.apply(submit("j", spec(type="gpu_render", payload={})))
    assert queries.why_pending(s, "j") == {"queued": "runnable; 0 jobs ahead of it"}
    s.apply(MarkWorkerLost(T0, "render"))
    why = queries.why_pending(s, "j")
    assert why == {"executor": "no live worker offers executor 'gpu_render'"}, why


def test_placement_gives_plugin_jobs_only_to_workers_offering_them() -> None:
    from haco.scheduler.placement import plan

    s = State()
    s.apply(Tick(T0))
    s.apply(SetClusterVersion(T0, 3))
    s.apply(register("plain", at_ms=T0, capacity=4))
    s.apply(_plugin_worker("render", "gpu_render"))
    s.apply(submit("j", spec(type="gpu_render", payload={})))
    s.apply(submit("k", spec()))
    placed = {a.job_id: a.worker_id for a in plan(s, {"plain", "render"}, 10)}
    assert placed["j"] == "render"
    assert not any(offers("gpu_render", w.plugins) for w in (s.workers["plain"],))


def test_schema_3_snapshot_loads_with_the_same_digest(tmp_path: Path) -> None:
    s = State()
    s.apply(Tick(T0))
    s.apply(register("w1", at_ms=T0, tags=("cpu",)))
    s.apply(submit("j", spec()))
    path = tmp_path / "s.duckdb"
    snapshot.dump(snapshot.capture(s), path, raft_index=7, raft_term=2, raft_data=b"raft")
    con = duckdb.connect(str(path))  # what schema-3 code wrote: no workers.plugins, schema_version 3
    con.execute("ALTER TABLE workers DROP COLUMN plugins")
    con.execute("UPDATE meta SET v = ? WHERE k = 'schema_version'", [msgpack.packb(3)])
    con.close()
    loaded = snapshot.load(path)
    assert loaded.state.digest() == s.digest() and loaded.state.workers["w1"].plugins == ()


def test_plugins_survive_a_snapshot_round_trip(tmp_path: Path) -> None:
    s = State()
    s.apply(Tick(T0))
    s.apply(SetClusterVersion(T0, 3))
    s.apply(_plugin_worker("render", "gpu_render", "etl"))
    snapshot.dump(snapshot.capture(s), tmp_path / "s.duckdb", raft_index=3, raft_term=1, raft_data=b"")
    loaded = snapshot.load(tmp_path / "s.duckdb").state
    assert loaded.workers["render"].plugins == ("etl", "gpu_render") and loaded.digest() == s.digest()
    assert loaded.plugin_offers == {"etl": 1, "gpu_render": 1}
