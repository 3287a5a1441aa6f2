"""API tokens: HMAC-SHA256 over a small JSON claim set, keyed by the cluster's token secret.

A token reads `haco1.<claims>.<mac>` (both parts base64url without padding). The claims are
`{"id", "role", "exp"}` plus `"wid"` for worker tokens: `exp` is a Unix time in seconds. Any
replica holding the same secret verifies any token; revocation is replicated state (the
`RevokeToken` command), checked by the caller after `verify`. The MAC is compared with
`hmac.compare_digest`. Standard library only; no I/O but `read_secret`/`write_secret`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PREFIX: Final = "haco1"
ROLES: Final = ("admin", "submitter", "worker", "reader")
TOKEN_CHARS_MAX: Final = 2048
SECRET_CHARS_MIN: Final = 16
TTL_S_MAX: Final = 400 * 86_400  #: a token lives at most this long; revocations are kept as long
_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_TTL_RE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


class TokenError(ValueError):
    """A token that does not verify. `code` is UNAUTHORIZED-worthy: MALFORMED, BAD_SIGNATURE, EXPIRED."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Claims:
    id: str
    role: str
    exp: int  #: Unix seconds
    worker_id: str | None = None

    @property
    def expires_at_ms(self) -> int:
        return self.exp * 1000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, f"{PREFIX}.{body}".encode(), hashlib.sha256).digest()


def parse_ttl(text: str) -> int:
    """'30d', '12h', '90m', '45s' or plain seconds -> seconds (1 s to TTL_S_MAX)."""
    m = _TTL_RE.match(text.strip())
    if m is None:
        raise ValueError(f"ttl {text!r} must look like 30d, 12h, 90m or 3600")
    seconds = int(float(m.group(1)) * _UNITS[m.group(2)])
    if not 1 <= seconds <= TTL_S_MAX:
        raise ValueError(f"ttl must be between 1 s and {TTL_S_MAX // 86_400} days")
    return seconds


def issue(secret: bytes, role: str, ttl_s: int, *, worker_id: str | None = None, now_s: float,
          token_id: str | None = None) -> tuple[str, Claims]:
    """A new signed token and its claims. Worker tokens must name their worker; others must not."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "worker") != (worker_id is not None):
        raise ValueError("a worker token needs --worker-id, and only a worker token takes one")
    if worker_id is not None and not 1 <= len(worker_id) <= 128:
        raise ValueError("worker id must be 1 to 128 characters")
    if not 1 <= ttl_s <= TTL_S_MAX:
        raise ValueError(f"ttl must be between 1 s and {TTL_S_MAX} s")
    claims = Claims(token_id or secrets.token_hex(8), role, int(now_s) + ttl_s, worker_id)
    obj: dict[str, object] = {"id": claims.id, "role": role, "exp": claims.exp}
    if worker_id is not None:
        obj["wid"] = worker_id
    body = _b64(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())
    return f"{PREFIX}.{body}.{_b64(_mac(secret, body))}", claims


def verify(secret: bytes, token: str, *, now_s: float) -> Claims:
    """The claims of a token signed with `secret` that has not expired; raises TokenError."""
    claims = unverified_claims(token)
    body, mac = token.split(".")[1:]
    try:
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        raise TokenError("MALFORMED", "token signature is not base64url") from None
    if not hmac.compare_digest(given, _mac(secret, body)):
        raise TokenError("BAD_SIGNATURE", "token signature does not verify (wrong cluster secret?)")
    if claims.exp <= now_s:
        raise TokenError("EXPIRED", "token has expired")
    return claims


def unverified_claims(token: str) -> Claims:
    """The claims a token carries, without checking its signature (to learn a token's id and
    expiry for revocation). Raises TokenError when it is not a well-formed haco token."""
    if not isinstance(token, str) or len(token) > TOKEN_CHARS_MAX or token.count(".") != 2:
        raise TokenError("MALFORMED", "not a haco token")
    prefix, body, _ = token.split(".")
    if prefix != PREFIX:
        raise TokenError("MALFORMED", f"token format must be {PREFIX}")
    try:
        obj = json.loads(_unb64(body))
    except (binascii.Error, ValueError, RecursionError):
        raise TokenError("MALFORMED", "token claims are not base64url JSON") from None
    if not isinstance(obj, dict) or set(obj) - {"id", "role", "exp", "wid"}:
        raise TokenError("MALFORMED", "token claims have unknown fields")
    tid, role, exp, wid = obj.get("id"), obj.get("role"), obj.get("exp"), obj.get("wid")
    good_wid = wid is None or isinstance(wid, str) and 1 <= len(wid) <= 128
    if not (isinstance(tid, str) and _ID_RE.match(tid) and role in ROLES and type(exp) is int and 0 < exp < 2**41
            and good_wid and (role == "worker") == (wid is not None)):
        raise TokenError("MALFORMED", "token claims are malformed")
    return Claims(tid, str(role), exp, wid)


def valid_token_id(text: str) -> bool:
    return bool(_ID_RE.match(text))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def read_secret(path: Path) -> bytes:
    """The secret in `path` (surrounding whitespace stripped). Raises ValueError naming the file."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read token secret file {path}: {exc.strerror}") from None
    if len(text) < SECRET_CHARS_MIN:
        raise ValueError(f"token secret in {path} must be at least {SECRET_CHARS_MIN} characters")
    return text.encode()


def write_secret(path: Path) -> bool:
    """Create `path` (mode 0600) with a fresh secret unless it exists; True when created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(new_secret() + "\n")
    return True


__all__ = ["Claims", "PREFIX", "ROLES", "TTL_S_MAX", "TokenError", "issue", "new_secret", "parse_ttl", "read_secret",
           "unverified_claims", "valid_token_id", "verify", "write_secret"]
