"""haco's Raft wire: msgpack messages in AES-256-GCM frames, no pickle anywhere.

Replaces pysyncobj 0.3.17's pickle + zlib + Fernet frames (PATCHES.md, "wire"). On a TCP
connection both sides first send the 8-byte PREAMBLE, then length-prefixed frames:

    frame = length (u32, big endian) | body            length <= the bound for the connection's phase

Handshake (the dialer D knows which node it calls, the acceptor A learns it from the hello):

    D -> A  hello   body = gcm_nonce(12) | AESGCM(K).seal([1, D, A, nonce_d(16)], aad=PREAMBLE|"hello")
    A -> D  ack     body = gcm_nonce(12) | AESGCM(K).seal([1, A, D, nonce_a(16), nonce_d], aad=PREAMBLE|"ack")
    D -> A  confirm the first data frame (below), {"type": "hello_done"}

Only after the confirm does A treat the connection as D's: a replayed hello gets an ack and
nothing else (the replayer cannot seal with the session key). Until then a connection may send
at most `handshakeBytesMax` per frame and must finish within `handshakeTimeout`.

Data frames use one key per direction, K_XY = HKDF(K, salt=nonce_d|nonce_a, info="haco raft X>Y"),
and a counter per direction starting at 0: body = AESGCM(K_XY).seal(counter as the 12-byte
nonce, msgpack(message), aad = X | ">" | Y | counter). The receiver expects exactly the next
counter, so a replayed, reordered or re-addressed frame fails its tag, as does a frame from
another connection (other nonces, other keys) or claiming another sender (other key, other aad).

K = HKDF-SHA256(secret, salt=SALT, info="haco raft cluster key"): the secret is the cluster's
Raft secret file, which launchers fill with 32 random bytes per cluster (hex), so K is a random
per-cluster key; HKDF only shapes it.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREAMBLE = b"HACORFT1"
LENGTH = struct.Struct(">I")
VERSION = 1
SALT = b"haco raft wire v1"
_NONCE = struct.Struct(">4xQ")  # 12-byte GCM nonce holding the 64-bit counter
_COUNTER = struct.Struct(">Q")


class FrameRefused(Exception):
    """A frame failed a check; `reason` is the counter's label (see REASONS)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


#: every reason a frame or connection is refused, as counted in /api/cluster and /metrics
REASONS = ("not_haco", "previous_release", "length", "tag", "hello", "malformed", "timeout")


def cluster_key(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=b"haco raft cluster key").derive(raw)


def _direction_key(key: bytes, salt: bytes, sender: str, receiver: str) -> AESGCM:
    info = b"haco raft " + sender.encode() + b">" + receiver.encode()
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key))


def looks_like_previous_release(head: bytes) -> bool:
    """pysyncobj 0.3.17 starts with a little-endian length and a Fernet token ("gAAAAA...")."""
    return len(head) >= 10 and head[4:10] == b"gAAAAA"


def seal_hello(key: bytes, sender: str, receiver: str, nonce: bytes, echo: bytes | None = None) -> bytes:
    body = [VERSION, sender, receiver, nonce] + ([echo] if echo is not None else [])
    gcm_nonce = os.urandom(12)
    aad = PREAMBLE + (b"ack" if echo is not None else b"hello")
    return gcm_nonce + AESGCM(key).encrypt(gcm_nonce, msgpack.packb(body, use_bin_type=True), aad)


def open_hello(key: bytes, body: bytes, *, ack: bool) -> list[Any]:
    """[version, sender, receiver, nonce(, echo)] of a hello or an ack; raises FrameRefused."""
    if len(body) < 12 + 16:
        raise FrameRefused("hello", "too short")
    try:
        plain = AESGCM(key).decrypt(body[:12], body[12:], PREAMBLE + (b"ack" if ack else b"hello"))
    except InvalidTag:
        raise FrameRefused("tag", "handshake frame not sealed with this cluster's key") from None
    try:
        fields = msgpack.unpackb(plain, raw=False)
    except Exception:
        raise FrameRefused("hello", "not msgpack") from None
    n = 5 if ack else 4
    if (type(fields) is not list or len(fields) != n or fields[0] != VERSION or type(fields[1]) is not str
            or type(fields[2]) is not str or not all(type(f) is bytes and len(f) == 16 for f in fields[3:])):
        raise FrameRefused("hello", "bad handshake fields")
    return fields


class Channel:
    """The two directions of one authenticated connection, once the handshake gave both nonces."""

    __slots__ = ("_seal", "_open", "_send_aad", "_recv_aad", "sent", "received")

    def __init__(self, key: bytes, me: str, peer: str, nonce_d: bytes, nonce_a: bytes) -> None:
        salt = nonce_d + nonce_a
        self._seal = _direction_key(key, salt, me, peer).encrypt
        self._open = _direction_key(key, salt, peer, me).decrypt
        self._send_aad = me.encode() + b">" + peer.encode()
        self._recv_aad = peer.encode() + b">" + me.encode()
        self.sent = 0
        self.received = 0

    def seal(self, message: Any) -> bytes:
        n = self.sent
        self.sent = n + 1
        body: bytes = self._seal(_NONCE.pack(n), msgpack.packb(message, use_bin_type=True),
                                 self._send_aad + _COUNTER.pack(n))
        return LENGTH.pack(len(body)) + body

    def open(self, body: bytes) -> Any:
        n = self.received
        try:
            plain = self._open(_NONCE.pack(n), body, self._recv_aad + _COUNTER.pack(n))
        except InvalidTag:
            raise FrameRefused("tag", f"frame {n} does not verify (forged, replayed or from another node)") from None
        self.received = n + 1
        try:
            message = msgpack.unpackb(plain, raw=False)
        except Exception:
            raise FrameRefused("malformed", "not msgpack") from None
        check_message(message)
        return message


def _int(v: Any) -> bool:
    return type(v) is int


def _ints(m: dict[str, Any], *keys: str) -> bool:
    return all(type(m.get(k)) is int for k in keys)


def _entries(v: Any) -> bool:
    if type(v) is not list:
        return False
    for e in v:
        if type(e) is not list or len(e) != 3 or type(e[0]) is not bytes or type(e[1]) is not int or type(e[2]) is not int:
            return False
    return True


def _append_entries(m: dict[str, Any]) -> bool:
    if not _ints(m, "term", "commit_index"):
        return False
    if "prevLogIdx" in m:
        if not all(m.get(k) is None or type(m.get(k)) is int for k in ("prevLogIdx", "prevLogTerm")):
            return False
        if "transmission" in m:
            return m["transmission"] in ("start", "process", "finish") and type(m.get("data")) is bytes
        return _entries(m.get("entries"))
    s = m.get("serialized")
    return s is None or (type(s) is list and len(s) == 3 and type(s[0]) is bytes and type(s[1]) is bool
                         and type(s[2]) is bool)


def _response(m: dict[str, Any]) -> bool:
    if not _int(m.get("request_id")):
        return False
    if "error" in m:
        return _int(m["error"])
    return _ints(m, "log_idx", "log_term")


_CHECKS = {
    "append_entries": _append_entries,
    "next_node_idx": lambda m: _int(m.get("next_node_idx")) and type(m.get("reset")) is bool
    and type(m.get("success")) is bool,
    "request_vote": lambda m: _ints(m, "term", "last_log_index", "last_log_term"),
    "response_vote": lambda m: _ints(m, "term"),
    "timeout_now": lambda m: _ints(m, "term"),
    "apply_command": lambda m: type(m.get("command")) is bytes and ("request_id" not in m or _int(m["request_id"])),
    "apply_command_response": _response,
    "hello_done": lambda m: True,
}


def check_message(message: Any) -> None:
    """Raise FrameRefused unless `message` is a Raft message of a known type with well-typed fields."""
    if type(message) is not dict:
        raise FrameRefused("malformed", "not a map")
    check = _CHECKS.get(message.get("type"))  # type: ignore[arg-type]
    if check is None or not check(message):
        raise FrameRefused("malformed", f"bad {message.get('type')!r} message")
