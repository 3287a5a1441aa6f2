"""Submit-time checks of the built-in executors' payloads, and which job types a cluster can run.

`payload_problem(type, payload)` checks a decoded JSON payload against the schema of the built-in
executor named `type` and returns `(field, message)` for the first problem, or None (also for a
type that is not built in: a plugin's payload is its own business). The worker's executors check
the same schema again when they run (haco/worker/executors/), together with what only the worker
can know (a `cwd` that exists, a program on its PATH); tests/raft_state/test_payloads.py holds the
two to the same verdicts. Pure: no I/O, never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

#: the executors every worker has; a job of another type needs a worker that advertises it
BUILTIN_EXECUTORS: Final = frozenset({"benchmark", "noop", "pytest", "python", "shell"})
BENCH_REPEAT_MAX: Final = 10_000
BENCH_WARMUP_MAX: Final = 1_000

Problem = tuple[str, str]  #: (field, message); the field is dotted from the job: `payload.argv`


def unknown_type_message(kind: str, plugins: Iterable[str]) -> str:
    """The UNKNOWN_EXECUTOR message, listing the types the cluster can run."""
    known = ", ".join(sorted(BUILTIN_EXECUTORS) + sorted(plugins))
    return f"no executor {kind!r}: neither built in nor offered by a registered worker; known: {known}"


def offers(kind: str, plugins: tuple[str, ...]) -> bool:
    """Whether a worker with these plugins runs jobs of type `kind`."""
    return kind in BUILTIN_EXECUTORS or kind in plugins


def payload_problem(kind: str, payload: Any) -> Problem | None:
    """The first problem of `payload` for the built-in executor `kind`, or None."""
    check = _CHECKS.get(kind)
    return None if check is None else check(payload)


def _shell(p: Any) -> Problem | None:
    return (_mapping(p, "shell", {"argv", "env", "cwd"}) or _str_list(p, "argv", required=True)
            or _common(p))


def _python(p: Any) -> Problem | None:
    return (_mapping(p, "python", {"function", "args", "kwargs", "env", "cwd", "pythonpath"}) or _call(p)
            or _common(p))


def _pytest(p: Any) -> Problem | None:
    problem = _mapping(p, "pytest", {"path", "args", "env", "cwd"})
    if problem is not None:
        return problem
    path = p.get("path")
    if not isinstance(path, str) or not path:
        return "payload.path", f"must be a non-empty string (the tests to run), got {_kind(path)}"
    return _str_list(p, "args") or _common(p)


def _benchmark(p: Any) -> Problem | None:
    fields = {"argv", "function", "args", "kwargs", "pythonpath", "repeat", "warmup", "env", "cwd"}
    problem = _mapping(p, "benchmark", fields)
    if problem is not None:
        return problem
    if ("argv" in p) == ("function" in p):
        return "payload", "give exactly one of 'argv' (a program) or 'function' ('module:function')"
    target = _str_list(p, "argv", required=True) if "argv" in p else _call(p)
    return (target or _int(p, "repeat", 1, BENCH_REPEAT_MAX) or _int(p, "warmup", 0, BENCH_WARMUP_MAX)
            or _common(p))


_CHECKS: Final[dict[str, Callable[[Any], Problem | None]]] = {
    "shell": _shell, "python": _python, "pytest": _pytest, "benchmark": _benchmark,
}
#: the built-in types whose payload has a schema (noop takes any JSON)
PAYLOAD_CHECKED: Final = frozenset(_CHECKS)


def _mapping(p: Any, kind: str, allowed: set[str]) -> Problem | None:
    if p is None:
        return "payload", f"is required for a {kind} job"
    if not isinstance(p, dict):
        return "payload", f"must be an object for a {kind} job, got {_kind(p)}"
    unknown = sorted(k for k in p if k not in allowed)
    if unknown:
        return f"payload.{unknown[0]}", f"unknown field for a {kind} job; allowed: {', '.join(sorted(allowed))}"
    return None


def _common(p: dict[str, Any]) -> Problem | None:
    env = p.get("env")
    if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
        return "payload.env", f"must be an object of string values, got {_kind(env)}"
    cwd = p.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd):
        return "payload.cwd", f"must be a non-empty string, got {_kind(cwd)}"
    return None


def _call(p: dict[str, Any]) -> Problem | None:
    ref = p.get("function")
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        return "payload.function", f"must be a string 'module:function', got {_describe(ref)}"
    if not isinstance(p.get("args", []), list):
        return "payload.args", f"must be a list, got {_kind(p['args'])}"
    if not isinstance(p.get("kwargs", {}), dict):
        return "payload.kwargs", f"must be an object, got {_kind(p['kwargs'])}"
    return _str_list(p, "pythonpath")


def _str_list(p: dict[str, Any], key: str, *, required: bool = False) -> Problem | None:
    value = p.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"payload.{key}", f"must be a list of strings, got {_describe(value)}"
    if required and not value:
        return f"payload.{key}", "must be a non-empty list of strings"
    return None


def _int(p: dict[str, Any], key: str, lo: int, hi: int) -> Problem | None:
    value = p.get(key, lo)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return f"payload.{key}", f"must be an integer from {lo} to {hi}, got {_describe(value)}"
    return None


def _describe(value: Any) -> str:
    """The kind of `value`, with a short string shown: `string 'echo x'` says what went wrong."""
    if isinstance(value, str):
        return f"string {value[:40]!r}" if len(value) <= 40 else f"string {value[:40]!r}..."
    return _kind(value)


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object",
            type(None): "nothing"}.get(type(value), type(value).__name__)
