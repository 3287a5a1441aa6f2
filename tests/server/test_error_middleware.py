"""The error middleware and read_json on a bare app: every failure is a JSON answer with a code,
an unexpected one a 500 carrying a request id and one error line carrying the traceback."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from haco.server.app import allow_all, error_middleware
from haco.server.keys import AUTHORIZE, CONFIG
from haco.server.requests import read_json


@dataclass
class _Config:
    body_bytes_max: int = 4096


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"body": await read_json(request)})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


def _app() -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=4096,
                          handler_args={"auto_decompress": False})
    app[AUTHORIZE] = allow_all
    app[CONFIG] = _Config()  # type: ignore[assignment]
    app.router.add_post("/echo", _echo)
    app.router.add_get("/boom", _boom)
    return app


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(_app())) as c:
        yield c


async def _post(client: TestClient, body: bytes, **headers: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    resp = await client.post("/echo", data=body, headers={"Content-Type": "application/json", **headers})
    return resp.status, await resp.json()


async def test_an_unexpected_error_is_a_json_500_with_a_request_id_and_one_error_line(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[type-arg]
    with caplog.at_level(logging.DEBUG, logger="haco.server.app"):
        resp = await client.get("/boom")
        body = await resp.json()
    assert resp.status == 500 and body["error"]["code"] == "INTERNAL"
    request_id = body["error"]["detail"]["request_id"]
    assert request_id in body["error"]["message"] and "Traceback" not in json.dumps(body)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert "\n" not in line and request_id in line and "RuntimeError: a bug" in line and "Traceback" in line


async def test_gzip_that_is_not_gzip_is_a_400(client: TestClient) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, b'{"a": 1}', **{"Content-Encoding": "gzip"})
    assert status == 400 and body["error"]["code"] == "BAD_ENCODING"
    assert body["error"]["detail"] == {"content_encoding": "gzip"}


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                            ("identity", lambda b: b)])
async def test_a_body_in_a_supported_encoding_is_read(client: TestClient, encoding: str, pack) -> None:  # type: ignore[no-untyped-def,type-arg]
    status, body = await _post(client, pack(b'{"a": [1, "\xc3\xa9"]}'), **{"Content-Encoding": encoding})
    assert (status, body) == (200, {"body": {"a": [1, "é"]}})


async def test_a_compression_bomb_is_a_413_and_truncated_gzip_a_400(client: TestClient) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, gzip.compress(b" " * 1_000_000), **{"Content-Encoding": "gzip"})
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    status, body = await _post(client, gzip.compress(b'{"a": 1}')[:-6], **{"Content-Encoding": "gzip"})
    assert status == 400 and body["error"]["code"] == "BAD_ENCODING"


async def test_an_unsupported_encoding_is_a_415(client: TestClient) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, b"xx", **{"Content-Encoding": "br"})
    assert status == 415 and body["error"]["code"] == "UNSUPPORTED_ENCODING"


@pytest.mark.parametrize("raw, field", [
    (b'{"payload": {"k": ["ok", "\\ud800"]}}', "payload.k[1]"),
    (b'{"jobs": [{"labels": {"\\udfff": "x"}}]}', "jobs[0].labels.?"),
    (b'"\\uDBFF"', "body"),
])
async def test_a_lone_surrogate_escape_is_a_400_naming_where(client: TestClient, raw: bytes, field: str) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, raw)
    assert status == 400 and body["error"]["code"] == "BAD_JSON" and body["error"]["detail"] == {"field": field}


@pytest.mark.parametrize("raw", [b'{"a": "\xed\xa0\x80"}', "{\"a\": 1}".encode("utf-16-le"), b'{"a": "\xff"}'])
async def test_a_body_that_is_not_utf8_is_a_400(client: TestClient, raw: bytes) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, raw)
    assert status == 400 and body["error"]["code"] == "BAD_JSON"


async def test_an_escaped_backslash_before_u_d800_is_ordinary_text(client: TestClient) -> None:  # type: ignore[type-arg]
    status, body = await _post(client, b'{"a": "\\\\ud800"}')
    assert (status, body) == (200, {"body": {"a": "\\ud800"}})


async def test_a_client_that_hangs_up_mid_body_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    runner = web.AppRunner(_app(), access_log=None)  # as the replica serves (TestServer cancels handlers)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.DEBUG):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"a\": ")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            for _ in range(100):  # bounded: the server notices the hang-up within a few loop turns
                if any("client went away" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()
    gone = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
