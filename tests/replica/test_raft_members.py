"""The fork's membership (haco/replica/raft/members.py, PATCHES.md #13) on one node driven by hand:
learners never count, one change at a time, a leader changes nothing before its no-op commits and
never removes itself, a truncated configuration goes with its entry, non-voters get no vote."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from haco.replica import raft as fork
from haco.replica.raft import members as m

from .test_raft_deviations import PEERS, SELF, Node

MEMBERS = 5
LEARNER = "127.0.0.1:4"


def _leader(tmp_path: Path) -> Node:
    """A leader of SELF + PEERS whose no-op is committed (PEERS[0] acknowledged it)."""
    n = Node("fork", tmp_path)
    n.become_leader()
    last = n.so.lastLogIndex()
    n.t.deliver(PEERS[0], {"type": "next_node_idx", "next_node_idx": last + 1, "success": True, "reset": False})
    n.tick()
    assert n.so.leaderReady()
    return n


def _change(n: Node, op: str, node_id: str, addr: str | None = None) -> list[int]:
    results: list[int] = []
    n.so.changeMembers(op, node_id, addr, {"url": "http://x:1"}, lambda _r, err: results.append(err))
    n.tick()
    return results


def _ack(n: Node, peer: str) -> None:
    n.t.deliver(peer, {"type": "next_node_idx", "next_node_idx": n.so.lastLogIndex() + 1, "success": True,
                       "reset": False})
    n.tick()


def test_a_learner_is_replicated_to_but_never_counts_toward_a_commit(tmp_path: Path) -> None:
    n = _leader(tmp_path)
    assert _change(n, "learner", "r4", LEARNER) == []  # appended, not committed yet
    assert [x[0] for x in n.so.members()] == sorted([SELF, *PEERS]) + ["r4"]
    assert LEARNER in n.t.nodes  # the transport dials it
    _ack(n, LEARNER)  # the leader and a learner: one voter of three
    assert n.so.membershipInFlight()
    _ack(n, PEERS[1])  # two voters of three
    assert not n.so.membershipInFlight()
    n.propose()
    n.tick()
    index = n.so.lastLogIndex()
    _ack(n, LEARNER)
    assert n.status()["commit_idx"] < index
    _ack(n, PEERS[0])
    assert n.status()["commit_idx"] == index
    # promoted, it counts: four voters, a majority is three
    assert _change(n, "promote", "r4") == []
    _ack(n, PEERS[0])
    _ack(n, LEARNER)
    assert not n.so.membershipInFlight() and n.so.members()[-1][2] is True


def test_one_change_at_a_time_and_none_before_the_no_op_commits(tmp_path: Path) -> None:
    fresh = Node("fork", tmp_path / "a")
    fresh.become_leader()  # its no-op is not committed
    assert _change(fresh, "learner", "r4", LEARNER) == [fork.FAIL_REASON.REQUEST_DENIED]
    assert "no-op" in str(fresh.so.lastMembershipRefusal) or "term" in str(fresh.so.lastMembershipRefusal)
    n = _leader(tmp_path / "b")
    assert _change(n, "learner", "r4", LEARNER) == []
    assert n.so.membershipInFlight()
    assert _change(n, "learner", "r5", "127.0.0.1:5") == [fork.FAIL_REASON.REQUEST_DENIED]
    assert _change(n, "remove", SELF) == [fork.FAIL_REASON.REQUEST_DENIED]
    _ack(n, PEERS[0])
    assert _change(n, "remove", SELF) == [fork.FAIL_REASON.REQUEST_DENIED]  # never itself
    assert "leader" in str(n.so.lastMembershipRefusal)


def test_a_follower_never_forwards_a_membership_change(tmp_path: Path) -> None:
    n = Node("fork", tmp_path)
    n.follow(1, [], commit=1)
    assert _change(n, "learner", "r4", LEARNER) == [fork.FAIL_REASON.NOT_LEADER]
    assert not n.t.take("apply_command")


def _entry(op: str, node_id: str, config: list[list[Any]], index: int, term: int) -> tuple[bytes, int, int]:
    return (bytes([MEMBERS]) + m.encode(op, node_id, config), index, term)


BASE = [[a, a, True, {}] for a in sorted([SELF, *PEERS])]


def test_a_configuration_takes_effect_appended_and_goes_with_its_truncated_entry(tmp_path: Path) -> None:
    n = Node("fork", tmp_path)
    grown = m.change(BASE, "learner", "r4", LEARNER)
    n.follow(1, [_entry("learner", "r4", grown, 2, 1)], commit=1)  # not committed: in effect all the same
    assert [x[0] for x in n.so.members()] == [x[0] for x in grown]
    assert n.so.membershipInFlight()
    # a new leader replaces index 2: the configuration goes with it
    n.t.deliver(PEERS[1], {"type": "append_entries", "term": 2, "commit_index": 1, "prevLogIdx": 1,
                           "prevLogTerm": 0, "entries": [(bytes([4]) + b"x", 2, 2)]})
    assert [x[0] for x in n.so.members()] == [x[0] for x in BASE]
    assert LEARNER not in n.t.nodes


def test_a_learner_never_stands_and_a_non_voter_gets_no_vote(tmp_path: Path) -> None:
    n = Node("fork", tmp_path)
    learner_self = [[a, a, a != SELF, {}] for a in sorted([SELF, *PEERS])]
    n.follow(1, [_entry("learner", SELF, learner_self, 2, 1)], commit=2)
    assert not n.so.isVoter()
    time.sleep(0.1)
    n.tick(3)
    assert n.status()["state"] == 0  # past its election deadline, still a follower
    # a voter hears a removed or learner node ask for a vote: ignored, term unchanged
    v = Node("fork", tmp_path / "v")
    v.follow(1, [], commit=1)
    v.t.nodes[LEARNER] = type(next(iter(v.t.nodes.values())))(LEARNER)
    v.t.deliver(LEARNER, {"type": "request_vote", "term": 9, "last_log_index": 99, "last_log_term": 9})
    assert v.status()["raft_term"] == 1 and not v.t.take("response_vote")


def test_a_dump_records_the_configuration_at_its_index() -> None:
    from haco.replica.raft import legacy
    entry = (b"\x01", 5, 2)
    cluster = {"members": m.change(BASE, "learner", "r4", LEARNER), "learned": True}
    data, old = legacy.unpack_raft_data(legacy.pack_raft_data((entry, entry, cluster)), local=False)
    assert not old and data[2] == cluster
    # the previous layout (addresses only) still reads
    data, _ = legacy.unpack_raft_data(legacy.pack_raft_data((entry, entry, [SELF])), local=False)
    assert data[2] == [SELF]


OPS = st.tuples(st.sampled_from(m.OPS), st.sampled_from(["a", "b", "c", "d", "e"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_each_accepted_change_moves_one_member_by_one_step(ops: list[tuple[str, str]]) -> None:
    """Whatever the sequence, an accepted change adds one learner, promotes one, or removes one
    member; two consecutive configurations never differ by more than one voter; the leader stays."""
    config = [["a", "h:a", True, {}]]
    accepted = 0
    for op, node_id in ops:
        try:
            new = m.change(config, op, node_id, f"h:{node_id}", {}, leader_id="a")
        except m.MembershipError:
            continue
        accepted += 1
        before, after = {x[0]: x[2] for x in config}, {x[0]: x[2] for x in new}
        moved = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert len(moved) == 1
        assert len(set(k for k, v in before.items() if v) ^ set(k for k, v in after.items() if v)) <= 1
        assert after.get("a") is True
        assert m.decode(m.encode(op, node_id, new))[2] == new
        config = new
    event(f"accepted {min(accepted, 5)}+")  # coverage: accepted changes, not only refusals


def test_malformed_configurations_are_refused() -> None:
    for bad in (None, [["a"]], [["a", "h", "yes", {}]], [["a", "h", True, {}], ["a", "h2", True, {}]],
                [["a", "h", True, {}], ["b", "h", True, {}]]):
        with pytest.raises(m.MembershipError):
            m.normalize(bad)
    with pytest.raises(m.MembershipError):
        m.decode(b"\xc1")
