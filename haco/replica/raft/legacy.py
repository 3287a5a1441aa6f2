"""Reading what the previous release wrote on this replica's own disk (never network bytes).

The previous release ran stock pysyncobj 0.3.17: its journal entries are pickled commands
(`b"\\x00" + pickle((funcID, (entry,)))`, haco's one replicated method, funcID 0) and its
snapshots hold pickled raft data `(lastAppliedEntry, prevEntry, {TCPNode, ...})`. At start the
journal's entries are converted once to this fork's commands (`b"\\x04" + entry`) and a
snapshot's raft data to msgpack, so nothing pickled is ever sent to a peer. The unpickler
admits no class but the two pickle protocol 2 needs for bytes and a stand-in for pysyncobj's
node objects: a file that needs anything else is refused.
"""

from __future__ import annotations

import io
import logging
import pickle
from typing import Any

import msgpack

log = logging.getLogger(__name__)

REGULAR, NO_OP, MEMBERSHIP, VERSION, ENTRY = 0, 1, 2, 3, 4


class LegacyFormatError(Exception):
    """A previous-release record this code cannot convert."""


class _LegacyNode:
    """Stands in for pysyncobj.node.TCPNode / Node when unpickling: keeps the address only."""

    def __init__(self, *args: Any) -> None:
        self.address = args[0] if args else None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.address = state.get("_TCPNode__address") or state.get("_Node__id") or self.address


class _Unpickler(pickle.Unpickler):
    _ALLOWED = {("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes"), ("builtins", "set"),
                ("builtins", "frozenset")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == "pysyncobj.node" and name in ("TCPNode", "Node"):
            return _LegacyNode
        raise LegacyFormatError(f"previous-release record refers to {module}.{name}")


def restricted_loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


def convert_command(command: bytes) -> bytes:
    """One journal command of the previous release as this fork's command (unchanged if it is one)."""
    kind = command[:1]
    if kind == bytes([REGULAR]):
        try:
            decoded = restricted_loads(command[1:])
        except LegacyFormatError:
            raise
        except Exception as exc:
            raise LegacyFormatError(f"previous-release journal command does not unpickle: {exc}") from exc
        if (type(decoded) is tuple and len(decoded) == 2 and decoded[0] == 0 and type(decoded[1]) is tuple
                and len(decoded[1]) == 1 and type(decoded[1][0]) is bytes):
            return bytes([ENTRY]) + decoded[1][0]
        raise LegacyFormatError("previous-release journal command is not haco's apply_entry(bytes)")
    if kind in (bytes([MEMBERSHIP]), bytes([VERSION])):
        return bytes([NO_OP])
    return command


def convert_journal(journal: Any) -> int:
    """Rewrite the previous release's entries in `journal` (the Journal interface) in place, once;
    returns how many were converted."""
    entries = [journal[i] for i in range(len(journal))]
    converted = [(_convert_or_keep(bytes(c), i), i, t) for c, i, t in entries]
    changed = sum(1 for (a, _, _), (b, _, _) in zip(entries, converted) if a != b)
    if not changed:
        return 0
    bulk = hasattr(journal, "_bulk")
    if bulk:
        journal._bulk = True  # the fsync journal: one sync at the end
    try:
        journal.clear()
        for entry in converted:
            journal.add(*entry)
    finally:
        if bulk:
            journal._bulk = False
    if hasattr(journal, "flush"):
        journal.flush()
    log.info("converted %d journal entries of the previous release to this release's format", changed)
    return changed


def _convert_or_keep(command: bytes, index: int) -> bytes:
    """An entry that does not convert stays as it is: applying it fails (SyncObj reports it to its
    apply guard, which stops the replica), it is never unpickled anywhere else."""
    try:
        return convert_command(command)
    except LegacyFormatError as exc:
        log.error("journal entry %d is not a command this release can read: %s", index, exc)
        return command


def _entry(e: Any) -> tuple[bytes, int, int]:
    if not (isinstance(e, (tuple, list)) and len(e) == 3 and isinstance(e[0], bytes)
            and type(e[1]) is int and type(e[2]) is int):
        raise LegacyFormatError("raft data entry is not (command, index, term)")
    return (bytes(e[0]), e[1], e[2])


def pack_raft_data(raft_data: Any) -> bytes:
    """(lastAppliedEntry, prevEntry, clusterNodes) as stored in a snapshot: msgpack, addresses only."""
    last, prev, nodes = raft_data
    if isinstance(nodes, dict):  # the configuration at this index (raft/members.py)
        cluster: Any = {"members": [list(m) for m in nodes["members"]], "learned": bool(nodes.get("learned"))}
    else:
        cluster = sorted(str(getattr(n, "address", n)) for n in nodes)
    return msgpack.packb([list(_entry(last)), list(_entry(prev)), cluster], use_bin_type=True)


def unpack_raft_data(blob: bytes, *, local: bool) -> tuple[tuple[Any, ...], bool]:
    """The raft data of a snapshot and whether it was the previous release's pickle. Only a file of
    this replica's own disk (`local`) may be in that format; a streamed one must be msgpack."""
    if blob[:1] == b"\x80":
        if not local:
            raise LegacyFormatError("a snapshot received from a peer holds pickled raft data")
        try:
            last, prev, nodes = restricted_loads(blob)
        except LegacyFormatError:
            raise
        except Exception as exc:
            raise LegacyFormatError(f"previous-release raft data does not unpickle: {exc}") from exc
        last, prev = _entry(last), _entry(prev)
        data = ((convert_command(last[0]), last[1], last[2]), (convert_command(prev[0]), prev[1], prev[2]),
                [str(n.address) for n in nodes])
        return data, True
    try:
        last, prev, addresses = msgpack.unpackb(blob, raw=False)
    except Exception as exc:
        raise LegacyFormatError(f"raft data is neither msgpack nor the previous release's: {exc}") from exc
    cluster = addresses if isinstance(addresses, dict) else list(addresses)
    return (_entry(last), _entry(prev), cluster), False
