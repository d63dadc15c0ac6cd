"""A request's shared read connection is never held while it waits for another connection or
while its body moves at the client's pace (PostgreSQL: a pool of 40 would otherwise empty under
forty slow uploads or downloads, and requests would wait on each other)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from sealpost.api.app import OneConnection
from sealpost.db.engine import make_engine, reading, request_scope, write_transaction


@pytest.fixture
def engine(postgres_schema_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_schema_url, pool_size=1)
    yield engine
    engine.dispose()


def _checked_out(engine: Engine) -> int:
    return engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


def test_a_write_inside_a_request_first_gives_the_read_connection_back(engine: Engine) -> None:
    with request_scope() as connections:
        with reading(engine) as conn:
            conn.execute(text("SELECT 1"))
        assert connections.used and _checked_out(engine) == 1
        with write_transaction(engine) as conn:
            assert _checked_out(engine) == 1  # the write's own, not two
            conn.execute(text("SELECT 1"))
        assert not connections.used
        with reading(engine) as conn:  # a later read gets one again
            assert conn.execute(text("SELECT 2")).scalar() == 2
    connections.close()
    assert _checked_out(engine) == 0


def test_a_streamed_response_holds_no_connection_while_it_is_sent(engine: Engine) -> None:
    seen_while_streaming: list[int] = []

    def endpoint(request: Request) -> StreamingResponse:
        with reading(engine) as conn:
            conn.execute(text("SELECT 1"))

        async def body() -> AsyncIterator[bytes]:
            for _ in range(3):
                seen_while_streaming.append(_checked_out(engine))
                yield b"x" * 1024

        return StreamingResponse(body())

    app = OneConnection(Starlette(routes=[Route("/download", endpoint)]))

    async def download() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/download")

    response = asyncio.run(download())
    assert response.status_code == 200 and len(response.content) == 3 * 1024
    assert seen_while_streaming == [0, 0, 0]
    assert _checked_out(engine) == 0
