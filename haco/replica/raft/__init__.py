"""haco's Raft: a fork of pysyncobj 0.3.17 (MIT, LICENSE.txt), changes listed in PATCHES.md.

The only Raft code in haco; haco/replica/node.py drives it. What it exports is all haco uses."""

from .config import FAIL_REASON, SERIALIZER_STATE, SyncObjConf
from .journal import Journal, MemoryJournal
from .monotonic import monotonic as raft_clock
from .syncobj import SyncObj
from .transport import TCPTransport

__all__ = ["FAIL_REASON", "SERIALIZER_STATE", "Journal", "MemoryJournal", "SyncObj", "SyncObjConf", "TCPTransport",
           "raft_clock"]
