"""A bare worker-protocol client for tests: msgpack frames over aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import msgpack


def pack(kind: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": 1, "t": kind, **fields}, use_bin_type=True)


async def connect(http: aiohttp.ClientSession, url: str, token: str | None,
                  ctx: ssl.SSLContext | None = None) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.ws_connect(url + "/api/workers/connect", headers=headers, ssl=ctx if ctx else True,
                                 timeout=aiohttp.ClientWSTimeout(ws_close=2.0))


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str | None = None, timeout_s: float = 10.0
                     ) -> dict[str, Any] | None:
    """The next frame (of `kind`, skipping others); None when the socket closes first."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return None
            if msg.type is aiohttp.WSMsgType.BINARY:
                body = msgpack.unpackb(msg.data, raw=False)
                if kind is None or body.get("t") == kind:
                    return dict(body)


def hello(worker_id: str, **extra: Any) -> bytes:
    return pack("hello", worker_id=worker_id, capacity=extra.pop("capacity", 1), tags=extra.pop("tags", []),
                running=extra.pop("running", []), **extra)
