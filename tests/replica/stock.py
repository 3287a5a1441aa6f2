"""Stock pysyncobj 0.3.17, for tests only: the frames of the previous release's wire, and the
stock SyncObj that the fork's deviation tests also run against (to show each fails there).

The one module of the project that imports pysyncobj (a test dependency, `pip install -e .[test]`)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pysyncobj
from pysyncobj import SyncObj as StockSyncObj
from pysyncobj import SyncObjConf as StockConf
from pysyncobj.encryptor import getEncryptor
from pysyncobj.monotonic import monotonic as stock_clock
from pysyncobj.version import VERSION

assert VERSION == "0.3.17", pysyncobj.__file__


def previous_release_frame(password: str, message: Any) -> bytes:
    """One frame as the previous release sent it: pickle, zlib, Fernet under the password's key."""
    import pickle
    data = getEncryptor(password).encrypt_at_time(zlib.compress(pickle.dumps(message), 3), int(stock_clock()))
    return struct.pack("i", len(data)) + data


__all__ = ["StockConf", "StockSyncObj", "previous_release_frame", "stock_clock"]
