# haco fork addition (PATCHES.md #13): the cluster configuration carried by the Raft log.
"""Membership: which nodes are in the cluster, and which of them vote.

A configuration is a list of members `[id, address, voter, meta]` (meta: a dict of strings, haco
keeps each replica's HTTP URL there). A membership entry in the log (command type MEMBERS) holds
the *whole* new configuration, not a delta, plus the change that made it:

    {'op': 'learner' | 'promote' | 'remove', 'id': str, 'members': [[id, addr, voter, meta], ...]}

Rules (Raft dissertation, section 4.1 single-server changes, with a learner step first):

- a configuration takes effect on every node as soon as its entry is in the node's log (appended,
  committed or not); a truncated entry takes its configuration with it;
- a leader appends a membership entry only when none is uncommitted and it has committed an entry
  of its own term (its no-op), so two configurations never differ by more than one voter;
- a new node joins as a learner (it receives the log, never votes, never counts toward a commit or
  an election) and becomes a voter by a second entry once the leader saw it catch up;
- a leader never removes itself (haco hands leadership over first).

This module is pure: it encodes, decodes and derives configurations; syncobj.py applies them.
"""

import msgpack

OPS = ('learner', 'promote', 'remove')


class MembershipError(ValueError):
    """A change that the current configuration does not allow."""


def normalize(members):
    """A configuration as a list of [id, addr, voter, meta] with checked types; raises
    MembershipError on anything else (it may come from the network, inside an entry)."""
    out = []
    ids, addrs = set(), set()
    if not isinstance(members, (list, tuple)):
        raise MembershipError('members must be a list')
    for m in members:
        if not (isinstance(m, (list, tuple)) and len(m) == 4 and isinstance(m[0], str) and m[0]
                and isinstance(m[1], str) and m[1] and isinstance(m[2], bool) and isinstance(m[3], dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in m[3].items())):
            raise MembershipError('malformed member %r' % (m,))
        if m[0] in ids or m[1] in addrs:
            raise MembershipError('member %s or address %s appears twice' % (m[0], m[1]))
        ids.add(m[0])
        addrs.add(m[1])
        out.append([m[0], m[1], m[2], dict(m[3])])
    out.sort(key=lambda m: m[0])  # by id: the same list on every node, whatever order it was given in
    return out  # no voter at all: a joining node that knows nothing yet (it never stands, commits nothing)


def change(members, op, node_id, addr=None, meta=None, leader_id=None):
    """The configuration after `op` on `node_id`; raises MembershipError if it is not allowed."""
    members = normalize(members)
    by_id = {m[0]: m for m in members}
    if op == 'learner':
        if node_id in by_id:
            raise MembershipError('%s is a member already' % node_id)
        if not addr or any(m[1] == addr for m in members):
            raise MembershipError('address %r is empty or used by another member' % (addr,))
        return normalize(members + [[node_id, addr, False, dict(meta or {})]])
    if op == 'promote':
        m = by_id.get(node_id)
        if m is None or m[2]:
            raise MembershipError('%s is not a learner' % node_id)
        return [[x[0], x[1], True if x[0] == node_id else x[2], x[3]] for x in members]
    if op == 'remove':
        if node_id not in by_id:
            raise MembershipError('%s is not a member' % node_id)
        if node_id == leader_id:
            raise MembershipError('the leader does not remove itself: hand leadership over first')
        rest = normalize([m for m in members if m[0] != node_id])
        if not any(m[2] for m in rest):
            raise MembershipError('the last voter cannot be removed')
        return rest
    raise MembershipError('unknown membership op %r' % (op,))


def encode(op, node_id, members):
    return msgpack.packb({'op': op, 'id': node_id, 'members': normalize(members)}, use_bin_type=True)


def decode(payload):
    """(op, id, members) of an entry's payload; raises MembershipError if it is malformed."""
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception as exc:
        raise MembershipError('membership entry is not msgpack: %s' % exc)
    if not (isinstance(body, dict) and body.get('op') in OPS and isinstance(body.get('id'), str)):
        raise MembershipError('malformed membership entry')
    return body['op'], body['id'], normalize(body.get('members'))


def voters(members):
    return [m for m in members if m[2]]


def majority(count):
    return count // 2 + 1
