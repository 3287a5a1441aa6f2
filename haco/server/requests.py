"""Request helpers shared by the routes: the JSON body, query parameters, bad-input errors, reads
as fresh as asked, and the one way a refused command becomes an HTTP error."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any, Final

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from raft_state import Accepted, SetClusterVersion
from raft_state.outcomes import Outcome

from haco.errors import NotFound, PayloadTooLarge, Rejected
from haco.scheduler.core import now_ms
from haco.server.keys import CONFIG, REPLICA


def require_accepted(outcome: Outcome) -> Accepted:
    """The outcome of a proposal, or the HTTP error its refusal maps to (haco.errors.Rejected)."""
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail)
    return outcome


JOB_ID_PREFIX_MIN: Final = 6  #: shorter prefixes are not looked up: too likely to be ambiguous
_MATCHES_SHOWN: Final = 10
_SCAN_ON_LOOP_MAX: Final = 20_000  #: more job ids than this are scanned off the loop


async def job_id_of(request: web.Request, text: str | None = None) -> str:
    """The job a request names: `text` (default: the path's `{job_id}`) when it is a job id, else
    the one job whose id starts with it (6 characters or more), so `haco job e8784b5e` works.
    Raises NotFound for none, a 400 AMBIGUOUS_JOB_ID listing the matches for several. Every route
    that takes a job id resolves it here, and only here."""
    jobs = request.app[REPLICA].state.jobs
    job_id = request.match_info["job_id"] if text is None else text
    if job_id in jobs:
        return job_id
    if len(job_id) < JOB_ID_PREFIX_MIN:
        hint = f" (an id prefix needs {JOB_ID_PREFIX_MIN} characters or more)" if job_id else ""
        raise NotFound(f"no job {job_id}{hint}", {"job_id": job_id})
    ids = list(jobs)  # one atomic copy: apply may add jobs meanwhile
    matches = await asyncio.to_thread(_prefixed, ids, job_id) if len(ids) > _SCAN_ON_LOOP_MAX else \
        _prefixed(ids, job_id)
    if not matches:
        raise NotFound(f"no job {job_id}", {"job_id": job_id})
    if len(matches) > 1:
        shown = ", ".join(matches[:_MATCHES_SHOWN]) + (", ..." if len(matches) > _MATCHES_SHOWN else "")
        raise_bad("AMBIGUOUS_JOB_ID", f"{len(matches)} jobs start with {job_id}: {shown}; give more of the id",
                  {"field": "job_id", "prefix": job_id, "count": len(matches), "matches": matches[:_MATCHES_SHOWN]})
    return matches[0]


def _prefixed(ids: list[str], prefix: str) -> list[str]:
    return sorted(i for i in ids if i.startswith(prefix))


JSON_DEPTH_MAX = 40  #: a job's payload may nest 32 deep inside the body's own two levels


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; a clear 400 when it is not, or nests deeper than JSON_DEPTH_MAX.
    (Size is bounded by the app's client_max_size: 413.)"""
    try:
        raw = await request.read()
    except RequestPayloadError as exc:  # a broken chunked body
        raise_bad("BAD_ENCODING", f"request body does not decode: {str(exc).strip()[:200]}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity" and raw:
        limit = request.app[CONFIG].body_bytes_max
        raw = await asyncio.to_thread(_decode_body, raw, encoding, limit) if len(raw) > 64 * 1024 else \
            _decode_body(raw, encoding, limit)
    if not raw:
        raise_bad("BAD_JSON", "request body is empty; send a JSON object")
    if len(raw) > 64 * 1024:  # a big body is parsed off the loop
        return await asyncio.to_thread(_parse_json, raw)
    return _parse_json(raw)


_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """Undo a Content-Encoding (the app turns aiohttp's own decoding off: its failure escaped
    every handler), bounded by `limit` decoded bytes so that a compression bomb is a 413."""
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise_bad("UNSUPPORTED_ENCODING", f"Content-Encoding {encoding[:32]!r} is not supported; "
                  "send identity, gzip or deflate", {"content_encoding": encoding[:32]})
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise_bad("BAD_ENCODING", f"request body is not valid {encoding}: {exc}", {"content_encoding": encoding})
    if len(out) > limit or decoder.unconsumed_tail:
        raise PayloadTooLarge(f"request body too large once decoded (limit {limit} bytes)")
    if not decoder.eof:
        raise_bad("BAD_ENCODING", f"request body is truncated {encoding}", {"content_encoding": encoding})
    return out


def _parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")  # strict: json.loads(bytes) would let CESU-8 surrogates and UTF-16 through
    except UnicodeDecodeError as exc:
        raise_bad("BAD_JSON", f"request body is not UTF-8 (byte {exc.start})")
    try:
        value = json.loads(text)
    except RecursionError:
        raise_bad("BAD_JSON", f"request body nests deeper than {JSON_DEPTH_MAX} levels")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and ints past 4300 digits
        raise_bad("BAD_JSON", f"request body is not JSON: {str(exc)[:200]}")
    # fewer brackets than the limit (counted over strings too: an overestimate) cannot nest deeper
    if raw.count(b"{") + raw.count(b"[") > JSON_DEPTH_MAX and _too_deep(value, JSON_DEPTH_MAX):
        raise_bad("BAD_JSON", f"request body nests deeper than {JSON_DEPTH_MAX} levels")
    if ("\\ud" in text or "\\uD" in text) and (where := _lone_surrogate(value)) is not None:
        raise_bad("BAD_JSON", f"{where}: is not valid Unicode (a lone surrogate escape)", {"field": where})
    return value


def _lone_surrogate(value: Any) -> str | None:
    """The path (`jobs[0].payload.k`) of the first string, key or value, that UTF-8 cannot encode."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodes(item):
                return path or "body"
        elif isinstance(item, dict):
            for k, v in item.items():
                if not k.isascii() and not _encodes(k):
                    return f"{path}.{k.encode('utf-8', 'replace').decode()}".lstrip(".")
                stack.append((v, f"{path}.{k}".lstrip(".")))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(value: Any, limit: int) -> bool:
    """True when containers nest more than `limit` deep; iterative, stops at the first too-deep one."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def raise_bad(code: str, message: str, detail: dict[str, Any] | None = None) -> Any:
    raise Rejected(code, message, detail)


#: query parameters every read takes (`fresh_enough`)
READ_PARAMS: Final = frozenset({"min_index", "consistency"})


def known_params(request: web.Request, *names: str) -> None:
    """Refuse query parameters the route does not take: a 400 BAD_QUERY naming them, so a typo or
    a filter this version lacks is not silently ignored. `names` plus READ_PARAMS are allowed."""
    allowed = READ_PARAMS.union(names)
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        listed = ", ".join(f"?{name[:64]}" for name in unknown[:10])
        raise_bad("BAD_QUERY", f"unknown query parameter{'s' if len(unknown) > 1 else ''} {listed}; "
                  f"{request.path} takes {', '.join(f'?{n}' for n in sorted(allowed))}",
                  {"field": unknown[0][:64], "unknown": [u[:64] for u in unknown[:10]], "known": sorted(allowed)})


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise_bad("BAD_QUERY", f"?{name} must be an integer", {"field": name})
    if not lo <= value <= hi:
        raise_bad("BAD_QUERY", f"?{name} must be between {lo} and {hi}", {"field": name})
    return value


def query_float(request: web.Request, name: str, lo: float, hi: float) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise_bad("BAD_QUERY", f"?{name} must be a number", {"field": name})
    if not lo <= value <= hi:
        raise_bad("BAD_QUERY", f"?{name} must be between {lo:g} and {hi:g}", {"field": name})
    return value


async def fresh_enough(request: web.Request) -> int:
    """Honour `?min_index=` and `?consistency=leader`; returns the applied index the read reflects."""
    replica = request.app[REPLICA]
    min_index = query_int(request, "min_index", None, 0, 2**62)
    consistency = request.query.get("consistency", "local")
    if consistency not in ("local", "leader"):
        raise_bad("BAD_QUERY", "?consistency must be local or leader", {"field": "consistency"})
    if consistency == "leader":  # a no-op barrier through the log: everything committed before it is visible
        index, _ = await replica.propose(SetClusterVersion(now_ms(), replica.state.cluster_version))
        min_index = max(min_index or 0, index)
    if min_index is not None and not await replica.wait_applied(min_index, 10.0):
        raise_bad("NOT_READY", f"replica has not applied index {min_index} yet (at {replica.applied_index})",
                  {"applied_index": replica.applied_index})
    return replica.applied_index
