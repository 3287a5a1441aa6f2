"""Job-spec validation: the one function the API calls, and the bounds apply checks again.

`parse_job(obj)` turns a decoded JSON object into a `JobSpec` plus its key, or raises
`SpecError(field, message)` naming the field. Everything it accepts fits the codec (int64,
finite floats, bounded strings, lists and maps). `spec_problem` re-checks a decoded spec at
apply, so a proposer that skipped validation still cannot store an out-of-bounds job.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Collection
from datetime import datetime
from typing import Any, Final

import msgpack

from .codec import INT64_MAX, INT64_MIN, canonical
from .payloads import BUILTIN_EXECUTORS, PAYLOAD_CHECKED, payload_problem, unknown_type_message
from .records import JobSpec

TYPE_RE: Final = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
PAYLOAD_BYTES_MAX: Final = 256 * 1024
LABELS_BYTES_MAX: Final = 16 * 1024
TAGS_MAX: Final = 32
TAG_CHARS_MAX: Final = 64
DEPENDS_MAX: Final = 256
ID_CHARS_MAX: Final = 128
KEY_CHARS_MAX: Final = 256
LABELS_MAX: Final = 64
LABEL_VALUE_CHARS_MAX: Final = 1024
NESTING_MAX: Final = 32
PRIORITY_ABS_MAX: Final = 1_000_000_000
TIMEOUT_MS_MAX: Final = 7 * 86_400_000
BACKOFF_MS_MAX: Final = 86_400_000
RETRIES_MAX: Final = 100
WORKER_CAPACITY_MAX: Final = 10_000
DEFAULTS: Final[dict[str, Any]] = {"priority": 0, "timeout_s": 3600.0, "max_retries": 0, "backoff_s": 1.0}
_TIMEOUT_S, _BACKOFF_S = float(DEFAULTS["timeout_s"]), float(DEFAULTS["backoff_s"])  # the defaults' fast path
_TIMEOUT_MS, _BACKOFF_MS = round(_TIMEOUT_S * 1000), round(_BACKOFF_S * 1000)
JOB_FIELDS: Final = frozenset({"type", "payload", "priority", "timeout_s", "max_retries", "backoff_s", "required_tags",
                               "requirements", "depends_on", "deadline", "key", "labels", "queue"})
REQUIREMENT_FIELDS: Final = frozenset({"hardware", "min_memory_gb", "min_cuda_compute", "cpus", "memory_gb", "gpus",
                                       "gpu_memory_gb", "gpu_compute", "gpu_kind", "pin_cpus"})
QUEUE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_QUEUE: Final = "default"
GPUS_MAX: Final = 64
CPUS_MAX: Final = 4096


class SpecError(ValueError):
    def __init__(self, field: str, message: str, code: str = "INVALID") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code  #: the API's error code: INVALID, or UNKNOWN_EXECUTOR for a type nobody runs


def parse_job(obj: Any, plugins: Collection[str] | None = None) -> tuple[JobSpec, str | None]:
    """A JSON job object -> (spec, idempotency key). Raises SpecError naming the bad field.

    With `plugins` (the executor types registered workers offer beyond the built-ins), the type
    must be one the cluster can run and a built-in type's payload must fit its executor."""
    if not isinstance(obj, dict):
        raise SpecError("job", "must be an object")
    if not JOB_FIELDS.issuperset(obj):
        raise SpecError(sorted(set(obj) - JOB_FIELDS)[0], "unknown field")
    get = obj.get
    kind = get("type")
    if not _executor_name(kind):
        raise SpecError("type", "must be an executor name like 'shell' (lowercase, up to 64 characters)")
    if plugins is not None and kind not in _UNCHECKED:  # noop, the bulk of a benchmark: no call at all
        check_executor(kind, get("payload"), plugins)
    payload = _payload(get("payload"))
    reqs = get("requirements") or {}
    if not isinstance(reqs, dict):
        raise SpecError("requirements", "must be an object")
    if reqs and not REQUIREMENT_FIELDS.issuperset(reqs):
        raise SpecError(f"requirements.{sorted(set(reqs) - REQUIREMENT_FIELDS)[0]}", "unknown field")
    priority, timeout_s = get("priority", DEFAULTS["priority"]), get("timeout_s", _TIMEOUT_S)
    retries, backoff_s = get("max_retries", DEFAULTS["max_retries"]), get("backoff_s", _BACKOFF_S)
    spec = JobSpec._make(
        kind,
        payload,
        priority if type(priority) is int and -PRIORITY_ABS_MAX <= priority <= PRIORITY_ABS_MAX
        else _int("priority", priority, -PRIORITY_ABS_MAX, PRIORITY_ABS_MAX),
        _TIMEOUT_MS if timeout_s == _TIMEOUT_S and type(timeout_s) is float
        else _ms("timeout_s", timeout_s, 1, TIMEOUT_MS_MAX),
        retries if type(retries) is int and 0 <= retries <= RETRIES_MAX
        else _int("max_retries", retries, 0, RETRIES_MAX),
        _BACKOFF_MS if backoff_s == _BACKOFF_S and type(backoff_s) is float
        else _ms("backoff_s", backoff_s, 0, BACKOFF_MS_MAX),
        _names("required_tags", get("required_tags"), TAGS_MAX, TAG_CHARS_MAX, sort=True),
        _names("requirements.hardware", reqs.get("hardware"), TAGS_MAX, TAG_CHARS_MAX, sort=True),
        _float("requirements.min_memory_gb", reqs.get("min_memory_gb", 0.0), 0.0, 1e6) if reqs else 0.0,
        _float("requirements.min_cuda_compute", reqs.get("min_cuda_compute", 0.0), 0.0, 100.0) if reqs else 0.0,
        _int("requirements.cpus", reqs.get("cpus", 0), 0, 4096) if reqs else 0,
        _names("depends_on", get("depends_on"), DEPENDS_MAX, ID_CHARS_MAX, sort=False),
        _deadline(get("deadline")),
        _labels(get("labels")),
        *_reservations(reqs),
        _queue(get("queue")),
    )
    key = obj.get("key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= KEY_CHARS_MAX):
        raise SpecError("key", f"must be a string of 1 to {KEY_CHARS_MAX} characters")
    return spec, key if key is None else _utf8("key", key)


def _reservations(reqs: dict[str, Any]) -> tuple[float, int, float, float, str, bool]:
    """memory_gb, gpus, gpu_memory_gb, gpu_compute, gpu_kind, pin_cpus (docs/resources.md)."""
    if not reqs:
        return 0.0, 0, 0.0, 0.0, "", False
    gpus = _int("requirements.gpus", reqs.get("gpus", 0), 0, GPUS_MAX)
    kind = reqs.get("gpu_kind", "")
    if not isinstance(kind, str) or not (kind == "" or TYPE_RE.match(kind)):
        raise SpecError("requirements.gpu_kind", "must be a device kind like 'cuda', 'rocm' or 'mps'")
    pin = reqs.get("pin_cpus", False)
    if type(pin) is not bool:
        raise SpecError("requirements.pin_cpus", f"must be true or false, got {_kind(pin)}")
    out = (_float("requirements.memory_gb", reqs.get("memory_gb", 0.0), 0.0, 1e6), gpus,
           _float("requirements.gpu_memory_gb", reqs.get("gpu_memory_gb", 0.0), 0.0, 1e6),
           _float("requirements.gpu_compute", reqs.get("gpu_compute", 0.0), 0.0, 1000.0), kind, pin)
    if not gpus and (out[2] or out[3] or kind):
        raise SpecError("requirements.gpus", "gpu_memory_gb, gpu_compute and gpu_kind need gpus of 1 or more")
    if pin and not reqs.get("cpus"):
        raise SpecError("requirements.pin_cpus", "needs cpus of 1 or more: the cores to pin to")
    return out


def _queue(value: Any) -> str:
    if value is None:
        return DEFAULT_QUEUE
    if not isinstance(value, str) or not QUEUE_RE.match(value):
        raise SpecError("queue", "must be a queue name: letters, digits, '_', '.', '-', up to 64 characters")
    return value


# ---- the executor: a type the cluster runs, a payload its built-in executor takes ----------------


_UNCHECKED: Final = BUILTIN_EXECUTORS - PAYLOAD_CHECKED  #: built in, any payload will do


def check_executor(kind: str, payload: Any, plugins: Collection[str]) -> None:
    """Raise SpecError when no worker can run `kind` (UNKNOWN_EXECUTOR) or a built-in executor
    would refuse `payload` (INVALID, naming the payload field)."""
    if kind not in BUILTIN_EXECUTORS:
        if kind not in plugins:
            raise SpecError("type", unknown_type_message(kind, plugins), code="UNKNOWN_EXECUTOR")
        return
    problem = payload_problem(kind, payload)
    if problem is not None:
        raise SpecError(*problem)


# ---- bounds --------------------------------------------------------------------------------------


_GOOD_TYPES: set[str] = set()  # executor names already matched by TYPE_RE: a pure cache, bounded


def _executor_name(kind: Any) -> bool:
    """Whether `kind` is a name TYPE_RE accepts; a name matched before skips the regex."""
    if type(kind) is str and kind in _GOOD_TYPES:
        return True
    if not isinstance(kind, str) or not TYPE_RE.match(kind):
        return False
    if len(_GOOD_TYPES) < 4096:
        _GOOD_TYPES.add(kind)
    return True


def spec_problem(spec: JobSpec) -> str | None:
    """Why a decoded spec breaks a bound, or None. Runs inside apply: cheap, never raises."""
    if not _executor_name(spec.type):
        return "type is not an executor name"
    if len(spec.payload) > PAYLOAD_BYTES_MAX or len(spec.labels) > LABELS_BYTES_MAX:
        return "payload or labels too large"
    if not (-PRIORITY_ABS_MAX <= spec.priority <= PRIORITY_ABS_MAX and 1 <= spec.timeout_ms <= TIMEOUT_MS_MAX
            and 0 <= spec.max_retries <= RETRIES_MAX and 0 <= spec.backoff_ms <= BACKOFF_MS_MAX
            and 0 <= spec.min_memory_gb <= 1e6 and 0 <= spec.min_cuda_compute <= 100 and 0 <= spec.cpus <= 4096):
        return "a number is out of range"
    if (spec.required_tags and _names_problem(spec.required_tags, TAGS_MAX, TAG_CHARS_MAX)
            or spec.hardware and _names_problem(spec.hardware, TAGS_MAX, TAG_CHARS_MAX)
            or spec.depends_on and _names_problem(spec.depends_on, DEPENDS_MAX, ID_CHARS_MAX)):
        return "a list of names breaks its bounds"
    if spec.deadline_ms is not None and spec.deadline_ms < 0:
        return "deadline before 1970"
    if not (0 <= spec.memory_gb <= 1e6 and 0 <= spec.gpus <= GPUS_MAX and 0 <= spec.gpu_memory_gb <= 1e6
            and 0 <= spec.gpu_compute <= 1000 and len(spec.gpu_kind) <= 64):
        return "a reservation is out of range"
    if spec.queue != DEFAULT_QUEUE and not QUEUE_RE.match(spec.queue):
        return "queue is not a queue name"
    return None


def _names_problem(names: tuple[str, ...], limit: int, chars: int) -> bool:
    if len(names) > limit or len(set(names)) != len(names):
        return True
    for n in names:
        if not 1 <= len(n) <= chars:
            return True
    return False


def worker_problem(cmd: Any) -> str | None:
    """Why a worker registration breaks a bound, or None."""
    if not 1 <= len(cmd.worker_id) <= ID_CHARS_MAX:
        return f"worker id must be 1 to {ID_CHARS_MAX} characters"
    if not 0 <= cmd.capacity <= WORKER_CAPACITY_MAX:
        return f"capacity must be 0 to {WORKER_CAPACITY_MAX}"
    if len(cmd.tags) > TAGS_MAX or len(cmd.hardware) > TAGS_MAX or any(
            not 1 <= len(t) <= TAG_CHARS_MAX for t in (*cmd.tags, *cmd.hardware)):
        return f"at most {TAGS_MAX} tags and hardware names of 1 to {TAG_CHARS_MAX} characters"
    if not (0 <= cmd.memory_gb <= 1e6 and 0 <= cmd.cuda_compute <= 100 and 0 <= cmd.cpus <= 1_000_000):
        return "a capability is out of range"
    if len(cmd.info) > LABELS_BYTES_MAX:
        return "info too large"
    if len(cmd.plugins) > TAGS_MAX or not all(_executor_name(p) for p in cmd.plugins):
        return f"at most {TAGS_MAX} plugins, each an executor name"
    devices = getattr(cmd, "devices", ())
    if len(devices) > GPUS_MAX or len({d.index for d in devices}) != len(devices) or any(
            not (0 <= d.index <= 1_000_000 and 1 <= len(d.kind) <= TAG_CHARS_MAX and len(d.model) <= 256
                 and 0 <= d.memory_gb <= 1e6 and 0 <= d.compute <= 1000) for d in devices):
        return f"at most {GPUS_MAX} devices with distinct indices, each of a named kind"
    return None


def _int(field: str, value: Any, lo: int, hi: int) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise SpecError(field, f"must be an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise SpecError(field, f"must be between {lo} and {hi}")
    return value


def _float(field: str, value: Any, lo: float, hi: float) -> float:
    value = _finite(field, value)
    if not lo <= value <= hi:
        raise SpecError(field, f"must be between {lo:g} and {hi:g}")
    return value


_FLOAT_MAX: Final = sys.float_info.max


def _finite(field: str, value: Any) -> float:
    """`value` as a finite float, whatever its JSON form: a NaN or an infinity, and an integer
    beyond the float range (JSON allows any number of digits), are refused, never converted."""
    if type(value) is float:
        if math.isfinite(value):
            return value
    elif type(value) is int:
        if -_FLOAT_MAX <= value <= _FLOAT_MAX:  # exact int/float comparison: no conversion, no OverflowError
            return float(value)
    else:
        raise SpecError(field, f"must be a finite number, got {_kind(value)}")
    raise SpecError(field, "must be a finite number within the 64-bit float range")


def _utf8(field: str, text: str) -> str:
    """`text` unchanged if it encodes as UTF-8. JSON's escapes (and json.loads on bytes) let lone
    surrogates through, which neither msgpack nor any client can encode."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SpecError(field, f"is not valid UTF-8 (a lone surrogate at character {exc.start})") from None
    return text


def _ms(field: str, seconds: Any, lo_ms: int, hi_ms: int) -> int:
    value = _float(field, seconds, lo_ms / 1000, hi_ms / 1000)
    return max(lo_ms, round(value * 1000))


def _names(field: str, value: Any, limit: int, chars: int, *, sort: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(field, f"must be a list of strings, got {_kind(value)}")
    if len(value) > limit:
        raise SpecError(field, f"has {len(value)} entries; the limit is {limit}")
    seen: dict[str, None] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str) or not 1 <= len(name) <= chars:
            raise SpecError(f"{field}[{i}]", f"must be a string of 1 to {chars} characters")
        seen[_utf8(f"{field}[{i}]", name)] = None
    return tuple(sorted(seen)) if sort else tuple(seen)


def _deadline(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError("deadline", "must be an ISO 8601 time like 2026-12-01T00:00:00Z")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError("deadline", "must be an ISO 8601 time like 2026-12-01T00:00:00Z") from None
    if when.tzinfo is None:
        raise SpecError("deadline", "needs a time zone (Z or +hh:mm)")
    ms = round(when.timestamp() * 1000)
    if not 0 <= ms <= INT64_MAX:
        raise SpecError("deadline", "out of range")
    return ms


def _payload(value: Any) -> bytes:
    """The payload as canonical msgpack (scalars, the common small payloads, skip the walk)."""
    kind = type(value)
    if kind is str:
        payload: bytes = msgpack.packb(_utf8("payload", value), use_bin_type=True)
    elif value is None or kind is bool or (kind is int and INT64_MIN <= value <= INT64_MAX):
        payload = msgpack.packb(value, use_bin_type=True)
    else:
        payload = canonical(_json_value("payload", value, 0))
    if len(payload) > PAYLOAD_BYTES_MAX:
        raise SpecError("payload", f"is {len(payload)} bytes encoded; the limit is {PAYLOAD_BYTES_MAX}")
    return payload


_NO_LABELS: Final = canonical({})


def _labels(value: Any) -> bytes:
    if value is None or value == {}:
        return _NO_LABELS
    if not isinstance(value, dict):
        raise SpecError("labels", f"must be an object of strings, got {_kind(value)}")
    if len(value) > LABELS_MAX:
        raise SpecError("labels", f"has {len(value)} entries; the limit is {LABELS_MAX}")
    for k, v in value.items():
        if not isinstance(v, str) or not 1 <= len(k) <= TAG_CHARS_MAX or len(v) > LABEL_VALUE_CHARS_MAX:
            raise SpecError(f"labels.{k}", f"keys of 1 to {TAG_CHARS_MAX} and string values up to "
                                           f"{LABEL_VALUE_CHARS_MAX} characters")
        _utf8(f"labels.{_utf8('labels', k)}", v)
    return canonical(value)


def _json_value(field: str, value: Any, depth: int) -> Any:
    """Check that a JSON value fits msgpack and the nesting bound; returns it unchanged."""
    if depth > NESTING_MAX:
        raise SpecError(field, f"nests deeper than {NESTING_MAX}")
    if isinstance(value, str):
        return _utf8(field, value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise SpecError(field, "integer out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(field, "numbers must be finite")
        return value
    if isinstance(value, list):
        return [_json_value(field, v, depth + 1) for v in value]
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise SpecError(field, "object keys must be strings")
            _utf8(field, k)
            _json_value(field, v, depth + 1)
        return value
    raise SpecError(field, f"unsupported value of type {_kind(value)}")


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)
