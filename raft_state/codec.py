"""The log-entry codec: `[WIRE_VERSION, [[tag, field, ...], ...]]` in msgpack.

One log entry holds one or more commands (group commit packs concurrent proposals together);
each gets its own outcome. Decoding is strict: wrong types, extra or missing fields, integers
outside int64 and non-finite floats make a command undecodable, which apply answers with the
same refusal on every replica. A field added to a command later has a default and comes last;
it is left out of the encoding while at its default (so the entry is byte for byte what older
code wrote and reads) and a decoded command without it gets the default.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack

from .commands import COMMAND_TYPES, TYPE_BY_TAG, Command
from .records import JobSpec

WIRE_VERSION: Final = 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


class DecodeError(ValueError):
    """An entry or command that does not decode; carries whether the tag itself was unknown."""

    def __init__(self, message: str, *, unknown_tag: bool = False) -> None:
        super().__init__(message)
        self.unknown_tag = unknown_tag


Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]


def _dec_int(v: Any) -> int:
    if type(v) is not int or not INT64_MIN <= v <= INT64_MAX:
        raise DecodeError(f"expected int64, got {type(v).__name__}")
    return v


def _dec_float(v: Any) -> float:
    if type(v) is int:
        v = float(v)
    if type(v) is not float or not math.isfinite(v):
        raise DecodeError(f"expected finite float, got {type(v).__name__}")
    return v


def _dec_exact(kind: type) -> Decoder:
    def dec(v: Any) -> Any:
        if type(v) is not kind:
            raise DecodeError(f"expected {kind.__name__}, got {type(v).__name__}")
        return v
    return dec


def _dec_optional(inner: Decoder) -> Decoder:
    return lambda v: None if v is None else inner(v)


def _dec_tuple(inner: Decoder, exact: type | None = None) -> Decoder:
    def dec(v: Any) -> tuple[Any, ...]:
        if type(v) is not list:
            raise DecodeError(f"expected list, got {type(v).__name__}")
        if exact is not None:  # a list of str (tags, ids): one pass of type checks, no call per item
            for x in v:
                if type(x) is not exact:
                    inner(x)  # raises its error
            return tuple(v)
        return tuple([inner(x) for x in v])
    return dec


def _dec_record(cls: type, names: Sequence[str], hints: Sequence[Any], decoders: Sequence[Decoder],
                positional: bool, defaults: Sequence[Any] = ()) -> Decoder:
    """A decoder for one record type, generated (as dataclasses generates __init__) so that int, float
    and exact-type fields are checked inline: entries are decoded on every replica, in the apply path.
    It accepts and refuses exactly what the per-field decoders do (it calls them for anything else)."""
    count = len(names)
    env: dict[str, Any] = {"_cls": cls, "DecodeError": DecodeError, "_isfinite": math.isfinite, "_MIN": INT64_MIN,
                           "_MAX": INT64_MAX, "_dec_float": _dec_float, "_defaults": list(defaults)}
    # `defaults`: the trailing fields' defaults as encoded, decoded below like any sent value
    lines = ["def dec(v):"]
    if defaults:  # trailing fields with defaults may be absent: the encoding older code wrote
        least = count - len(defaults)
        lines += [f"    if type(v) is not list or not {least} <= len(v) <= {count}:",
                  f"        raise DecodeError('{cls.__name__}: expected {least} to {count} fields')",
                  f"    if len(v) < {count}:",
                  f"        v = v + _defaults[len(v) - {least}:]"]
    else:
        lines += [f"    if type(v) is not list or len(v) != {count}:",
                  f"        raise DecodeError('{cls.__name__}: expected {count} fields')"]
    lines.append(f"    {', '.join(f'x{i}' for i in range(count))}{',' if count == 1 else ''} = v")
    for i, (hint, d) in enumerate(zip(hints, decoders)):
        env[f"d{i}"] = d
        if hint is int:
            lines.append(f"    if type(x{i}) is not int or not _MIN <= x{i} <= _MAX: d{i}(x{i})")
        elif hint is float:
            lines.append(f"    if type(x{i}) is not float or not _isfinite(x{i}): x{i} = _dec_float(x{i})")
        elif hint in (str, bytes, bool):
            lines.append(f"    if type(x{i}) is not {hint.__name__}: d{i}(x{i})")
        else:
            lines.append(f"    x{i} = d{i}(x{i})")
    if positional:
        lines.append(f"    return _cls._make({', '.join(f'x{i}' for i in range(count))})")
    else:
        lines.append(f"    return _cls({', '.join(f'{n}=x{i}' for i, n in enumerate(names))})")
    exec("\n".join(lines), env)  # noqa: S102  (generated from the record's own field names and types)
    dec: Decoder = env["dec"]
    return dec


def _compile(hint: Any) -> tuple[Encoder, Decoder]:
    """An (encoder, decoder) pair for one annotated type."""
    origin = typing.get_origin(hint)
    if hint is int:
        return (lambda v: v), _dec_int
    if hint is float:
        return float, _dec_float
    if hint in (str, bytes, bool):
        return (lambda v: v), _dec_exact(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        enc, dec = _compile(inner)
        return (lambda v: None if v is None else enc(v)), _dec_optional(dec)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        enc, dec = _compile(item)
        return (lambda v: [enc(x) for x in v]), _dec_tuple(dec, item if item in (str, bytes) else None)
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or hint is JobSpec):
        return _compile_record(hint)
    raise TypeError(f"no codec for {hint!r}")


def _field_names(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return list(getattr(cls, "FIELDS"))


def _compile_record(cls: type) -> tuple[Encoder, Decoder]:
    names = _field_names(cls)
    hints = typing.get_type_hints(cls)
    pairs = [_compile(hints[n]) for n in names]
    env: dict[str, Any] = {}
    items = []
    for i, (n, hint, (e, _)) in enumerate(zip(names, [hints[n] for n in names], pairs)):
        env[f"e{i}"] = e
        items.append(f"v.{n}" if hint in (int, str, bytes, bool) else f"e{i}(v.{n})")  # their encoders: identity
    # fields at their default are left off the end (see the module docstring); defaults as encoded
    defaults = [e(d) for (e, _), d in zip(pairs[len(names) - len(_trailing_defaults(cls)):], _trailing_defaults(cls))]
    if defaults:
        env["_last"] = defaults
        env["_least"] = len(names) - len(defaults)
        exec(f"def enc(v):\n    out = [{', '.join(items)}]\n"  # noqa: S102
             f"    while len(out) > _least and out[-1] == _last[len(out) - 1 - _least]:\n"
             f"        out.pop()\n    return out", env)
    else:
        exec(f"def enc(v):\n    return [{', '.join(items)}]", env)  # noqa: S102  (as _dec_record)
    enc: Encoder = env["enc"]
    return enc, _dec_record(cls, names, [hints[n] for n in names], [p[1] for p in pairs],
                            positional=not dataclasses.is_dataclass(cls),
                            defaults=defaults)


def _trailing_defaults(cls: type) -> list[Any]:
    """The defaults of a dataclass's trailing fields that have one; a record's `DEFAULTS`."""
    if not dataclasses.is_dataclass(cls):
        defaults: dict[str, Any] = getattr(cls, "DEFAULTS", {})
        names = getattr(cls, "FIELDS")
        return [defaults[n] for n in names[len(names) - len(defaults):]]
    out: list[Any] = []
    for f in reversed(dataclasses.fields(cls)):
        if f.default is dataclasses.MISSING:
            break
        out.append(f.default)
    return out[::-1]


_CODECS: Final[dict[type, tuple[Encoder, Decoder]]] = {t: _compile_record(t) for t in COMMAND_TYPES}
_SPEC_ENCODE, _SPEC_DECODE = _compile_record(JobSpec)


def encode_command_fields(cmd: Command) -> list[Any]:
    return [cmd.TAG, *_CODECS[type(cmd)][0](cmd)]


def encode(*commands: Command) -> bytes:
    """One log entry holding `commands`, applied in order, each with its own outcome."""
    entry: bytes = msgpack.packb([WIRE_VERSION, [encode_command_fields(c) for c in commands]], use_bin_type=True)
    return entry


def decode_command(raw: Any) -> Command:
    if type(raw) is not list or not raw or type(raw[0]) is not int:
        raise DecodeError("a command is [tag, field, ...]")
    cls = TYPE_BY_TAG.get(raw[0])
    if cls is None:
        raise DecodeError(f"unknown command tag {raw[0]}", unknown_tag=True)
    decoded: Command = _CODECS[cls][1](raw[1:])
    return decoded


def split_entry(entry: bytes) -> list[Any]:
    """The raw commands of a log entry; raises DecodeError when the envelope itself is bad."""
    try:
        raw = msgpack.unpackb(entry, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from None
    if type(raw) is not list or len(raw) != 2 or raw[0] != WIRE_VERSION or type(raw[1]) is not list:
        raise DecodeError("not a haco log entry")
    return raw[1]


def decode(entry: bytes) -> list[Command]:
    """All commands of an entry; raises DecodeError on the first bad one (tests and tools)."""
    return [decode_command(c) for c in split_entry(entry)]


def encode_spec(spec: JobSpec) -> list[Any]:
    return _SPEC_ENCODE(spec)  # type: ignore[no-any-return]


def decode_spec(raw: Any) -> JobSpec:
    return _SPEC_DECODE(raw)  # type: ignore[no-any-return]


def canonical(value: Any) -> bytes:
    """Canonical msgpack: maps with sorted keys, so equal values give equal bytes."""
    packed: bytes = msgpack.packb(_sorted(value), use_bin_type=True)
    return packed


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value
