"""`HacoClient.save_snapshot` and `HacoClient.compact`: a replica's snapshot, for operators (admin).

`save_snapshot(path)` streams `GET /api/snapshot` from the first replica that serves it into a
temporary file beside `path` (file writes off the loop), checks the length the replica announced,
syncs it and renames it onto `path`: `path` is either the old file or the whole new one. A
replica that cannot be reached or answers 503 is skipped for the next; any other error (401,
403) is raised at once. `compact(url)` asks exactly that replica to take a snapshot now.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import aiohttp

from haco.errors import HacoError, NotApplied, Unreachable

if TYPE_CHECKING:
    from haco.client import HacoClient

CHUNK_BYTES: Final = 1 << 20
#: a replica with no dump yet takes one before it answers (the server waits up to 120 s)
FIRST_BYTE_TIMEOUT_S: Final = 150.0


@dataclass(frozen=True, slots=True)
class SavedSnapshot:
    path: str
    bytes: int
    snapshot_index: int  #: the Raft index the replica said the file holds
    url: str  #: the replica it came from


async def save_snapshot(client: HacoClient, path: str | os.PathLike[str]) -> SavedSnapshot:
    from haco.client import _RETRYABLE_CONNECTION, _why_unreachable, error_from_body
    target = Path(path)
    last: HacoError | None = None
    order = client.urls[client._current:] + client.urls[:client._current]
    for url in order:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=client.config.connect_timeout_s,
                                        sock_read=FIRST_BYTE_TIMEOUT_S)
        part = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            async with client._get_session().get(url + "/api/snapshot", timeout=timeout) as resp:
                if resp.status != 200:
                    body: Any = await resp.json() if resp.content_type == "application/json" else await resp.text()
                    exc = error_from_body(resp.status, body, url=url)
                    if resp.status in (502, 503, 504):
                        last = exc if isinstance(exc, NotApplied) else Unreachable(exc.message, exc.detail)
                        continue
                    raise exc
                written = await _write(resp, part)
                expected = resp.content_length
                if expected is not None and written != expected:
                    raise Unreachable(f"{url}: the snapshot ended after {written} of {expected} bytes", {"url": url})
                index = int(resp.headers.get("X-Haco-Snapshot-Index", "0"))
            await asyncio.to_thread(_publish, part, target)
            return SavedSnapshot(str(target), written, index, url)
        except _RETRYABLE_CONNECTION as conn_exc:
            last = Unreachable(f"{url}: {_why_unreachable(conn_exc)}", {"url": url})
        except Unreachable as exc:
            last = exc
        finally:
            await asyncio.to_thread(part.unlink, missing_ok=True)
    raise last or Unreachable("no replica to ask")


async def _write(resp: aiohttp.ClientResponse, part: Path) -> int:
    f: BinaryIO = await asyncio.to_thread(open, part, "wb")
    written = 0
    try:
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            await asyncio.to_thread(f.write, chunk)
            written += len(chunk)
        await asyncio.to_thread(os.fsync, f.fileno())
    finally:
        await asyncio.to_thread(f.close)
    return written


def _publish(part: Path, target: Path) -> None:
    os.replace(part, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def compact(client: HacoClient, url: str, *, timeout_s: float = 150.0) -> dict[str, Any]:
    from haco.client import _RETRYABLE_CONNECTION, _why_unreachable, error_from_body
    url = url.rstrip("/")
    try:
        status, _, payload = await client._send(url, "POST", "/api/snapshot", None, None, timeout_s)
    except _RETRYABLE_CONNECTION as exc:
        raise Unreachable(f"{url}: {_why_unreachable(exc)}", {"url": url}) from None
    if status >= 400:
        raise error_from_body(status, payload, url=url)
    return dict(payload)
