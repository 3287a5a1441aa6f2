"""How a leader's log entries flow to its followers: patches on pysyncobj 0.3.17's append path.

On the leader: acks that no longer rewind nextIndex, and one send per drain of the command queue.
On a follower: a commit index only over entries checked against the leader's log. The two message
checks share one wrapper of the transport's callback (`check_messages`).

Like haco/replica/plumbing.py (which builds the SyncObj these wrap) it reaches into pysyncobj's
internals, pinned in tests/integration/test_replication.py::test_pysyncobj_internals_the_replica_relies_on;
it imports nothing from pysyncobj. All is tick-thread code installed once by Replica.start.
Measured with `append_sent` in `GET /api/cluster` (tests/integration/test_replication.py):
64 clients spread over 3 replicas, entries sent per entry appended 2.6-2.8 -> 2.0 (one per
follower), append_entries messages per entry 2.9-3.1 -> 1.8-2.0.
"""

from __future__ import annotations

from typing import Any


def check_messages(so: Any) -> None:
    """Wrap the transport's message callback (set once in SyncObj.__init__; pinned) with two checks.

    Acks keep nextIndex: pysyncobj 0.3.17 sets a follower's nextIndex to the acknowledged index + 1
    on every success answer (next_node_idx), although the entries after it are already on their
    way: with two entries in flight each ack re-sent the second one (the follower truncated and
    re-appended it), and with more in flight that grew quadratic. An ack now only moves nextIndex
    forward; a follower that misses entries (a dropped connection) still answers reset=True, which
    rewinds it as before.

    A follower commits only checked entries: pysyncobj raises a follower's commit index to
    min(leader's commit index, its own last index) on every append_entries, also on those that
    carry no log position: the messages that stream a snapshot. A replica that led before
    (partitioned, or killed and restarted) can hold entries of its old term that were never
    committed; while the new leader streamed it a snapshot it applied them as committed and
    answered their proposers with success, though no other replica had them (chaos, seed 23: one
    acknowledged submit lost after its leader was partitioned away). A follower's log is known to
    match the leader's only up to the last entry of a message whose position it checked, so a
    message without a position now carries no commit index above the follower's own."""
    transport = so._SyncObj__transport
    deliver = transport._onMessageReceivedCallback
    next_index = so._SyncObj__raftNextIndex

    def on_message(node: Any, message: Any) -> None:  # tick thread
        kind = message.get("type") if type(message) is dict else None
        if kind == "next_node_idx" and message.get("success") and not message.get("reset"):
            sent = next_index.get(node)
            deliver(node, message)
            if sent is not None and next_index.get(node, sent) < sent:
                next_index[node] = sent
            return
        if kind == "append_entries" and "prevLogIdx" not in message and "commit_index" in message:
            message["commit_index"] = min(message["commit_index"], so._SyncObj__raftCommitIndex)
        deliver(node, message)

    transport.setOnMessageReceivedCallback(on_message)


def send_once_per_drain(so: Any) -> None:
    """Send append_entries once after the tick's command queue is drained, not once per command.

    With appendEntriesUseBatch off (its batching waits a whole appendEntriesPeriod), pysyncobj
    0.3.17 calls __sendAppendEntries after appending each queued command. Our own proposals come
    one group-commit entry at a time, but a leader also appends every entry its followers forward,
    each then sent to every follower in a message of its own. Wraps SyncObj._checkCommandsToApply
    (looked up on the instance every tick, like __sendAppendEntries; both pinned): while it runs,
    a send only notes that one is due; one send of everything appended follows."""
    drain = so._checkCommandsToApply

    def drain_then_send() -> None:  # tick thread
        send = so._SyncObj__sendAppendEntries
        due = [False]
        so._SyncObj__sendAppendEntries = lambda: due.__setitem__(0, True)
        try:
            drain()
        finally:
            so._SyncObj__sendAppendEntries = send
        if due[0]:
            send()

    so._checkCommandsToApply = drain_then_send

