"""Each change the fork makes to pysyncobj 0.3.17's Raft (haco/replica/raft/PATCHES.md), shown on
one node driven by hand: the same scenario runs on the fork and on stock pysyncobj, and the stock
run is expected to fail (strict xfail), so a fix that upstream already has, or one the fork lost,
turns the run red. No sockets: a recording transport delivers and collects messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from haco.replica import raft as fork

from .stock import StockConf, StockSyncObj

ENTRY, NO_OP = 4, 1
PEERS = ["127.0.0.1:2", "127.0.0.1:3"]
SELF = "127.0.0.1:1"


class RecordingTransport:
    """Duck-types the Transport both implementations call; every send is recorded."""

    made: list[RecordingTransport] = []

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        RecordingTransport.made.append(self)
        self.nodes = {n.address: n for n in otherNodes}
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.down: set[str] = set()
        self.on_message: Any = None
        self.on_connected: Any = None

    def setOnMessageReceivedCallback(self, cb: Any) -> None:  # noqa: N802 (pysyncobj's names)
        self.on_message = cb

    def setOnNodeConnectedCallback(self, cb: Any) -> None:  # noqa: N802
        self.on_connected = cb

    def setOnNodeDisconnectedCallback(self, cb: Any) -> None:  # noqa: N802
        pass

    def setOnReadonlyNodeConnectedCallback(self, cb: Any) -> None:  # noqa: N802
        pass

    def setOnReadonlyNodeDisconnectedCallback(self, cb: Any) -> None:  # noqa: N802
        pass

    def setOnUtilityMessageCallback(self, message: Any, cb: Any) -> None:  # noqa: N802
        pass

    ready = True

    def tryGetReady(self) -> None:  # noqa: N802
        pass

    def waitReady(self) -> None:  # noqa: N802
        pass

    def addNode(self, node: Any) -> None:  # noqa: N802
        self.nodes[node.address] = node

    def dropNode(self, node: Any) -> None:  # noqa: N802
        self.nodes.pop(node.address, None)

    def setWireId(self, address: str, node_id: str) -> None:  # noqa: N802 (the fork's membership)
        pass

    def wireId(self, node: Any) -> str:  # noqa: N802
        return str(node.address)

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        if node.address in self.down:  # a connection found dead on send: nothing goes out
            return False
        self.sent.append((node.address, dict(message)))
        return True

    def destroy(self) -> None:
        pass

    def wireStats(self) -> dict[str, Any]:  # noqa: N802
        return {"refused": {}, "refused_total": 0}

    # ---- test side ----
    def connect_all(self) -> None:
        for node in self.nodes.values():
            self.on_connected(node)

    def deliver(self, address: str, message: dict[str, Any]) -> None:
        self.on_message(self.nodes[address], message)

    def take(self, kind: str = "append_entries", to: str | None = None) -> list[dict[str, Any]]:
        out = [m for a, m in self.sent if m["type"] == kind and (to is None or a == to)]
        self.sent.clear()
        return out


class Node:
    """One SyncObj (fork or stock) with manual ticks and a recording transport."""

    def __init__(self, impl: str, tmp: Path, raft_data: Any = None, serializer: Any = None, **conf: Any) -> None:
        self.impl = impl
        self.applied: list[bytes] = []
        timing = dict(autoTick=False, appendEntriesUseBatch=False, appendEntriesPeriod=0.01, raftMinTimeout=0.05,
                      raftMaxTimeout=0.06, connectionTimeout=1.0, leaderFallbackTimeout=30.0,
                      commandsWaitLeader=False, logCompactionMinEntries=10**6, logCompactionMinTime=10**6)
        dump = str(tmp / f"{impl}.dump")
        if impl == "fork":
            fork_conf = fork.SyncObjConf(password="x", fullDumpFile=dump, serializer=serializer or (lambda *a: None),
                                         deserializer=lambda p: raft_data, **{**timing, **conf})
            self.so = fork.SyncObj(SELF, PEERS, fork_conf, applier=lambda entry, index: self.applied.append(entry),
                                   transportClass=RecordingTransport)
        else:
            self.so = StockSyncObj(SELF, PEERS, StockConf(**timing), transportClass=RecordingTransport)
        self.t = RecordingTransport.made.pop()
        self.t.connect_all()

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.so.doTick(0.0)

    def status(self) -> dict[str, Any]:
        return dict(self.so.getStatus())

    def propose(self, payload: bytes = b"x") -> None:
        """Queue one command (an entry on the fork, a no-op on stock: stock's apply would unpickle it)."""
        self.so._applyCommand(payload, None, ENTRY if self.impl == "fork" else NO_OP)

    def become_leader(self) -> None:
        deadline = time.monotonic() + 5
        while self.status()["state"] != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
            self.tick()
        assert self.status()["state"] == 1, self.status()
        self.t.deliver(PEERS[0], {"type": "response_vote", "term": self.status()["raft_term"]})
        assert self.status()["state"] == 2
        self.tick()
        self.t.sent.clear()

    def follow(self, term: int, entries: list[tuple[bytes, int, int]], commit: int) -> None:
        """A leader (PEERS[0]) appends `entries` after index 1 (the initial no-op)."""
        self.t.deliver(PEERS[0], {"type": "append_entries", "term": term, "commit_index": commit,
                                  "entries": entries, "prevLogIdx": 1, "prevLogTerm": 0})


def impls() -> list[Any]:
    return ["fork", pytest.param("stock", marks=pytest.mark.xfail(strict=True, reason="stock pysyncobj 0.3.17"))]


@pytest.fixture
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Node:
    return Node(request.param, tmp_path)


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_a_follower_commits_only_entries_a_checked_message_covered(node: Node) -> None:
    """The lost acknowledged write: entries of an old term, never committed, were applied as
    committed when a new leader's message without a log position (a snapshot chunk or a heartbeat
    to a follower being streamed one) carried a higher commit index."""
    cmd = bytes([ENTRY if node.impl == "fork" else NO_OP])
    node.follow(1, [(cmd + b"a", 2, 1), (cmd + b"b", 3, 1)], commit=1)
    assert node.status()["commit_idx"] == 1
    node.t.deliver(PEERS[1], {"type": "append_entries", "term": 2, "commit_index": 10, "serialized": None})
    assert node.status()["commit_idx"] == 1


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_an_ack_does_not_rewind_next_index(node: Node) -> None:
    """With entries in flight, a success answer for an earlier one must not send them again."""
    node.become_leader()
    node.propose()
    node.tick()
    node.propose()
    node.tick()
    key = f"next_node_idx_server_{PEERS[0]}"
    sent_up_to = node.status()[key]
    node.t.deliver(PEERS[0], {"type": "next_node_idx", "next_node_idx": sent_up_to - 1, "success": True,
                              "reset": False})
    assert node.status()[key] == sent_up_to


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_one_send_per_drain_of_the_command_queue(node: Node) -> None:
    """Forwarded and local commands appended in one tick go to each follower in one message."""
    node.become_leader()
    for _ in range(5):
        node.propose()
    node.tick()
    carried = [m for m in node.t.take(to=PEERS[0]) if m.get("entries")]
    assert len(carried) == 1 and len(carried[0]["entries"]) == 5, carried


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_a_stalled_follower_listens_before_it_stands_for_election(node: Node) -> None:
    """The first tick after a stall (deadline passed while the thread did not run) reads what the
    leader sent before it may start an election."""
    node.follow(1, [], commit=1)
    node.tick()
    time.sleep(0.1)  # the thread stalls past the election deadline
    node.tick()  # its poll would read the leader's heartbeats: no election yet
    assert node.status()["state"] == 0


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_each_snapshot_chunk_is_answered(node: Node) -> None:
    """A follower receiving a long snapshot stream answers every chunk (neither success nor
    reset), or the leader heard nothing for the whole stream and dropped the connection."""
    node.follow(1, [], commit=1)
    node.t.sent.clear()
    node.t.deliver(PEERS[0], {"type": "append_entries", "term": 1, "commit_index": 1,
                              "serialized": [b"chunk", True, False]})
    answers = node.t.take("next_node_idx")
    assert answers and not answers[-1]["success"] and not answers[-1]["reset"]


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_an_append_batch_stays_under_the_batch_bound(node: Node) -> None:
    """A small entry followed by a huge one: stock sent both in one message (a frame over any
    bound); the fork sends the small one, then the huge one alone, in chunks."""
    node.become_leader()
    first = node.status()["log_len"] + 1  # the log starts at index 1
    node.propose(b"s")
    node.propose(b"h" * (2**16 + 10))  # appendEntriesBatchSizeBytes defaults to 64 KiB
    node.tick()
    # the follower missed both: the leader sends again from the small one
    node.t.deliver(PEERS[0], {"type": "next_node_idx", "next_node_idx": first, "success": False, "reset": True})
    node.t.sent.clear()
    time.sleep(0.02)  # past appendEntriesPeriod: the next tick sends
    node.tick()
    sent = node.t.take(to=PEERS[0])
    assert any(e[1] == first for m in sent for e in m.get("entries", [])), sent
    for m in sent:
        size = sum(len(e[0]) for e in m.get("entries", [])) + len(m.get("data", b""))
        assert size <= 2**16, size


@pytest.mark.parametrize("node", impls(), indirect=True)
def test_a_vote_request_that_could_not_be_sent_goes_out_when_the_peer_reconnects(node: Node) -> None:
    """Follower-to-follower connections carry nothing and time out when idle, so a candidate's
    request to a peer may find its connection dead; with 5 voters a handover then needed a second
    election. The request goes out once the connection is back, in the same term."""
    node.t.down.add(PEERS[1])
    deadline = time.monotonic() + 5
    while node.status()["state"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        node.tick()
    term = node.status()["raft_term"]
    assert not node.t.take("request_vote", to=PEERS[1])
    node.t.down.clear()
    node.t.on_connected(node.t.nodes[PEERS[1]])
    again = node.t.take("request_vote", to=PEERS[1])
    assert again and again[0]["term"] == term, again


def test_hold_commands_stops_the_log_growing(tmp_path: Path) -> None:
    """The handover rule (fork only, stock has no such call): while held, nothing queued, local or
    forwarded, is appended; released, it all is."""
    n = Node("fork", tmp_path)
    n.become_leader()
    before = n.status()["log_len"]
    n.so.holdCommands()
    n.propose()
    n.t.deliver(PEERS[0], {"type": "apply_command", "command": bytes([ENTRY]) + b"fwd", "request_id": 1})
    n.tick(3)
    assert n.status()["log_len"] == before
    n.so.holdCommands(False)
    n.tick()
    assert n.status()["log_len"] == before + 2


def test_a_forwarded_command_must_be_a_haco_entry(tmp_path: Path) -> None:
    """A leader appends only haco's own entries from a follower: any other command type (the
    previous release's pickled commands included) is denied, never logged."""
    n = Node("fork", tmp_path)
    n.become_leader()
    before = n.status()["log_len"]
    n.t.deliver(PEERS[0], {"type": "apply_command", "command": b"\x00\x80\x02K\x00.", "request_id": 7})
    n.tick()
    assert n.status()["log_len"] == before
    assert n.t.take("apply_command_response")[0]["error"] == fork.FAIL_REASON.REQUEST_DENIED


def test_a_dump_without_journal_meta_raises_the_term_to_its_last_entry(tmp_path: Path) -> None:
    """A data dir holding a dump and no journal meta (a backup copied in, a lost meta file): the
    term starts at the dump's last entry's, not at 0, or this node could lead at a lower term and
    append entries that a stale log ending at the dump's term outranks in elections."""
    last, prev = (bytes([ENTRY]) + b"b", 10, 7), (bytes([ENTRY]) + b"a", 9, 7)
    (tmp_path / "fork.dump").write_bytes(b"a dump")
    n = Node("fork", tmp_path, raft_data=(last, prev, []))
    n.tick()
    assert n.status()["raft_term"] == 7 and n.status()["last_applied"] == 10
    n.become_leader()
    assert n.status()["raft_term"] == 8


def test_a_forced_compaction_skips_the_staggered_window(tmp_path: Path) -> None:
    """`haco operator compact`: with logCompactionSplit each replica compacts only in its own slice
    of every logCompactionMinTime; forced, it compacts at the next tick. This node's slice is the
    first tenth of the period, and the period is chosen so that now is three quarters into it."""
    taken: list[Any] = []
    period_s = time.monotonic() / 0.75
    n = Node("fork", tmp_path, serializer=lambda name, data: taken.append(data), logCompactionSplit=True,
             logCompactionMinTime=period_s)
    cmd = bytes([ENTRY])
    n.follow(1, [(cmd + b"a", 2, 1), (cmd + b"b", 3, 1)], commit=3)
    n.tick(2)
    assert n.applied == [b"a", b"b"] and taken == []
    n.so.forceLogCompaction()
    n.tick()
    assert [tuple(e)[1] for e in taken[0][:2]] == [3, 2]
