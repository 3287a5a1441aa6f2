"""Hostile input: arbitrary log entries never make apply raise; validation accepts nothing the codec can't store."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raft_state import Rejected, RejectCode, SpecError, State, SubmitJobs, NewJob, Tick, encode, decode, parse_job
from raft_state.codec import WIRE_VERSION
from raft_state.commands import TYPE_BY_TAG
from raft_state.codec import encode_spec
from raft_state.digest import spec_digest, spec_hash
from raft_state.validate import spec_problem

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=25)


def _fits_msgpack(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return False
    return True


def _seeded_state() -> State:
    s = State()
    s.apply(Tick(1_000))
    return s


@FAST
@given(st.binary(max_size=200))
def test_apply_entry_on_arbitrary_bytes_never_raises(entry: bytes) -> None:
    s = _seeded_state()
    before = s.digest()
    outcomes = s.apply_entry(entry)
    assert outcomes is not None
    if all(isinstance(o, Rejected) for o in outcomes):
        assert s.digest() == before


command_like = st.tuples(st.sampled_from(sorted(TYPE_BY_TAG) + [0, 99]), st.lists(msgpack_values, max_size=10))


@FAST
@given(st.lists(command_like, max_size=4))
def test_apply_entry_on_arbitrary_msgpack_structures_never_raises(commands: list[tuple[int, list[Any]]]) -> None:
    raw = [WIRE_VERSION, [[tag, *fields] for tag, fields in commands]]
    if not _fits_msgpack(raw):
        return
    s = _seeded_state()
    outcomes = s.apply_entry(msgpack.packb(raw, use_bin_type=True))
    assert len(outcomes) == len(commands)
    assert s.digest() == s.full_digest()


@FAST
@given(msgpack_values)
def test_apply_entry_on_arbitrary_msgpack_values_never_raises(value: Any) -> None:
    if _fits_msgpack(value):
        _seeded_state().apply_entry(msgpack.packb(value, use_bin_type=True))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
job_field_values = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["shell", "noop", "Bad Type", ""]) | json_values,
    "payload": json_values,
    "priority": st.integers(-(2**64), 2**64) | json_values,
    "timeout_s": st.floats() | st.integers(-5, 10**7) | json_values,
    "max_retries": st.integers(-2, 200) | json_values,
    "backoff_s": st.floats() | json_values,
    "required_tags": st.lists(st.text(max_size=70), max_size=4) | json_values,
    "requirements": st.fixed_dictionaries({}, optional={
        "hardware": st.lists(st.text(max_size=5), max_size=3), "min_memory_gb": st.floats() | json_values,
        "min_cuda_compute": st.floats(), "cpus": st.integers(-3, 5000), "extra": json_values}) | json_values,
    "depends_on": st.lists(st.text(max_size=5), max_size=3) | json_values,
    "deadline": st.sampled_from(["2026-12-01T00:00:00Z", "2026-12-01T00:00:00", "9999-12-31T23:59:59+00:00",
                                 "0001-01-01T00:00:00Z", "nope"]) | json_values,
    "key": st.text(max_size=300) | json_values,
    "labels": st.dictionaries(st.text(max_size=70), st.text(max_size=5) | json_values, max_size=3) | json_values,
    "surprise": json_values,
})


@FAST
@given(json_values | job_field_values)
def test_parse_job_raises_only_spec_error_and_what_it_accepts_round_trips(obj: Any) -> None:
    try:
        the_spec, key = parse_job(obj)
    except SpecError as exc:
        assert exc.message and str(exc).startswith(exc.field)
        return
    assert spec_problem(the_spec) is None
    assert spec_digest(the_spec) == spec_hash(encode_spec(the_spec))  # the fast path hashes what the codec stores
    cmd = SubmitJobs(1, (NewJob("j", key, the_spec),))
    assert decode(encode(cmd)) == [cmd]
    outcome = _seeded_state().apply_entry(encode(cmd))[0]
    assert not isinstance(outcome, Rejected) or outcome.code is RejectCode.UNKNOWN_DEPENDENCY, outcome


def test_import_loads_no_replication_or_server_code() -> None:
    code = ("import sys, raft_state, raft_state.snapshot, raft_state.queries\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pysyncobj', 'aiohttp', 'haco'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
