"""Payload checks shared by the executors. Each raises PayloadError with a message naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from haco.worker.executors.base import ExecContext, PayloadError


def require_mapping(executor: str, payload: Any, *, allowed: set[str]) -> Mapping[str, Any]:
    """`payload` as a mapping with only `allowed` keys."""
    if not isinstance(payload, Mapping):
        raise PayloadError(f"{executor} payload must be an object, got {type(payload).__name__}")
    unknown = sorted(str(k) for k in payload if k not in allowed)
    if unknown:
        raise PayloadError(f"{executor} payload: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return payload


def str_list(executor: str, payload: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    """A list of strings; `required` ones must be present and non-empty."""
    value = payload.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PayloadError(f"{executor} payload: {key!r} must be a list of strings")
    if required and not value:
        raise PayloadError(f"{executor} payload: {key!r} must be a non-empty list of strings")
    return value


def str_map(executor: str, payload: Mapping[str, Any], key: str) -> dict[str, str]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise PayloadError(f"{executor} payload: {key!r} must be an object of string to string")
    return dict(value)


def int_field(executor: str, payload: Mapping[str, Any], key: str, *, default: int, lo: int, hi: int) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise PayloadError(f"{executor} payload: {key!r} must be an integer in [{lo}, {hi}]")
    return value


def function_ref(executor: str, payload: Mapping[str, Any]) -> str:
    """The `module:function` reference, checked for shape only (it is imported in the subprocess)."""
    value = payload.get("function")
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise PayloadError(f"{executor} payload: 'function' must be a string 'module:function'")
    return value


def working_dir(executor: str, payload: Mapping[str, Any], ctx: ExecContext) -> Path:
    """Payload `cwd` (relative to the attempt's workdir) or the workdir itself; must exist."""
    value = payload.get("cwd")
    if value is None:
        return ctx.workdir
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{executor} payload: 'cwd' must be a non-empty string")
    path = ctx.workdir / value  # an absolute cwd replaces the workdir
    if not path.is_dir():
        raise PayloadError(f"{executor} payload: cwd {value!r} is not a directory")
    return path
