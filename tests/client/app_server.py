"""The real replica app (routes, validation, refusals) over an in-process replica without Raft
(tests/server/fake_replica.py), served on 127.0.0.1 from a background thread's event loop, so
client and CLI tests talk to the actual API rather than a stand-in of it."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp.test_utils import TestServer

from haco.config import NodeConfig
from haco.results.store import ResultsStore
from haco.server.app import build_app
from tests.server.fake_replica import FakeReplica


@contextmanager
def serve_app(results: ResultsStore | None = None) -> Iterator[tuple[str, FakeReplica]]:
    """Yields (base URL, replica); no scheduler loop runs, so the state changes only by requests.
    `results`, when given, is the app's results store (the caller opens and closes it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = NodeConfig(id="r1", raft_addr="127.0.0.1:1", api_url="http://127.0.0.1:1", data_dir=Path(tmp),
                         insecure_open_api=True)
        replica = FakeReplica(cfg)

        async def start() -> TestServer:
            app = build_app(cfg, replica, results)  # type: ignore[arg-type]
            app.cleanup_ctx[:] = [c for c in app.cleanup_ctx if getattr(c, "__name__", "") != "_scheduler_ctx"]
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            return server

        server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        try:
            yield str(server.make_url("")).rstrip("/"), replica
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
