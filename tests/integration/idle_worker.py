"""A worker that registers with capacity 0 and so is never given a job: something to look up, drain
and undrain in API tests without running anything a test generated.

It holds one connection to the leader from a thread of its own, heartbeating every second, and says
hello again (registering anew) whenever the connection ends, e.g. after the worker was deregistered.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

import aiohttp

from tests.security.wsclient import connect, hello, next_frame, pack

from .cluster import Cluster

_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)


class IdleWorker:
    def __init__(self, cluster: Cluster, worker_id: str) -> None:
        self.cluster = cluster
        self.worker_id = worker_id
        self.token = cluster.token("worker", worker_id=worker_id) if cluster.auth else None
        self.welcomed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name=f"idle-{worker_id}",
                                        daemon=True)

    def __enter__(self) -> IdleWorker:
        self._thread.start()
        if not self.welcomed.wait(20):
            self.__exit__(None, None, None)
            raise AssertionError(f"no leader welcomed {self.worker_id}")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while not self._stop.is_set():
                try:
                    url = self.cluster.nodes[await asyncio.to_thread(self.cluster.leader, 10)].url
                    ws = await connect(http, url, self.token, self.cluster.ctx)
                    async with ws:
                        await ws.send_bytes(hello(self.worker_id, capacity=0))
                        first = await next_frame(ws, timeout_s=5)
                        if first is not None and first.get("t") == "welcome":
                            self.welcomed.set()
                            await self._heartbeat(ws)
                except (aiohttp.ClientError, OSError, TimeoutError, AssertionError):
                    pass  # no leader yet, or it went away: try again
                await asyncio.sleep(0.2)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Until stopped or closed; every frame the replica sends (drain, cancel) is read and ignored."""
        while not self._stop.is_set():
            await ws.send_bytes(pack("heartbeat", load={}))
            try:
                msg = await ws.receive(timeout=1.0)
            except TimeoutError:
                continue
            if msg.type in _CLOSED:
                return
