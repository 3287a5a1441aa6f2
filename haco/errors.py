"""haco's error tree, shared by server, client and CLI. A leaf module: imports nothing from haco.

Every error that crosses HTTP has a stable UPPER_SNAKE code and an HTTP status; the body is
`{"error": {"code", "message", "detail"}}`. The client turns a body back into the class below.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HacoError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "", detail: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.detail = detail or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class ConfigError(HacoError):
    code = "CONFIG"
    status = 400


class BadRequest(HacoError):
    code = "BAD_REQUEST"
    status = 400


class Unauthorized(HacoError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(HacoError):
    code = "FORBIDDEN"
    status = 403


class NotFound(HacoError):
    code = "NOT_FOUND"
    status = 404


class Conflict(HacoError):
    code = "CONFLICT"
    status = 409


class WorkerOffline(Conflict):
    """The worker holding an attempt's log is not connected; `detail` names it and carries the
    replicated tail (`worker_id`, `tail`). Asking again once it is back gives the full log."""

    code = "WORKER_OFFLINE"


class LogUnavailable(Conflict):
    """The worker is connected but has no log of that attempt (removed by retention, or the
    worker predates logs); `detail` carries the replicated tail."""

    code = "LOG_UNAVAILABLE"


class NotStarted(Conflict):
    """The job has no attempt yet (pending), so there is no output to read."""

    code = "NOT_STARTED"


class PayloadTooLarge(HacoError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class ReplicationError(HacoError):
    """The write's fate is decided by replication, not by the state machine."""


class NotApplied(ReplicationError):
    """Nothing was applied (queue full, no leader, discarded, not leader, denied): safe to retry."""

    code = "NOT_APPLIED"
    status = 503


class Overloaded(NotApplied):
    """Admission control refused the write before it reached Raft: retry after Retry-After."""

    code = "OVERLOADED"


class OutcomeUnknown(ReplicationError):
    """Maybe applied (leader changed, unknown outcome, timeout): retry with the same idempotency key."""

    code = "OUTCOME_UNKNOWN"
    status = 504


#: state-machine rejection codes (raft_state.RejectCode) -> HTTP status
REJECT_STATUS: dict[str, int] = {
    "MALFORMED": 400, "UNKNOWN_COMMAND": 400, "INVALID": 400, "VERSION_GATED": 409,
    "UNKNOWN_JOB": 404, "UNKNOWN_WORKER": 404, "UNKNOWN_DEPENDENCY": 400, "DUPLICATE_JOB_ID": 409,
    "KEY_REUSED": 409, "STALE_ATTEMPT": 409, "NOT_PENDING": 409, "NOT_RUNNABLE": 409, "QUEUE_PAUSED": 409,
    "WORKER_UNAVAILABLE": 409, "REQUIREMENTS_UNMET": 409, "JOB_FINAL": 409, "TOO_EARLY": 409, "INTERNAL": 500,
    "DEPENDENCY_CYCLE": 400, "GROUP_EXISTS": 409, "UNKNOWN_SCHEDULE": 404, "SCHEDULE_EXISTS": 409,
    "SCHEDULE_PAUSED": 409, "SLOT_PASSED": 409, "TOO_LATE": 409, "RESOURCES_BUSY": 409, "UNKNOWN_QUEUE": 404,
    "QUEUE_FULL": 409, "QUEUE_EXISTS": 409, "QUEUE_NOT_EMPTY": 409,
    # edge codes raised by the API layer itself
    "BAD_JSON": 400, "BAD_QUERY": 400, "UNKNOWN_EXECUTOR": 400, "BAD_REQUEST": 400, "NOT_FOUND": 404, "NOT_READY": 503,
    "SQL_REFUSED": 400, "SQL_ERROR": 400, "SQL_TIMEOUT": 408, "TIMEOUT": 408, "BAD_ENCODING": 400,
    "UNSUPPORTED_ENCODING": 415, "CLIENT_GONE": 400, "AMBIGUOUS_JOB_ID": 400,
}


class Rejected(HacoError):
    """The state machine refused the command; `code` is its RejectCode. `status` overrides the
    code's usual HTTP status (REJECT_STATUS): a body field naming an unknown queue is a 400, a
    path naming one a 404."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None, *,
                 status: int | None = None) -> None:
        super().__init__(message, detail)
        self.reject_code = code
        self._status = status

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.reject_code, "message": self.message, "detail": self.detail}}

    @property
    def http_status(self) -> int:
        return self._status or REJECT_STATUS.get(self.reject_code, 409)


# --- client side: raised by haco.client, never sent by a server -------------------------------


class Unreachable(HacoError):
    """No replica answered (connection refused, reset or timed out) before the call's deadline."""

    code = "UNREACHABLE"
    status = 503


class RejectedBadRequest(Rejected, BadRequest):
    """A state-machine refusal answered with 400 (INVALID, UNKNOWN_DEPENDENCY, ...)."""


class RejectedNotFound(Rejected, NotFound):
    """A state-machine refusal answered with 404 (UNKNOWN_JOB, UNKNOWN_WORKER)."""


class RejectedConflict(Rejected, Conflict):
    """A state-machine refusal answered with 409 (KEY_REUSED, JOB_FINAL, STALE_ATTEMPT, ...)."""
