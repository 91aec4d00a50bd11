"""The HTTP floor for bench/http.py: the cheapest FastAPI app, served exactly as `slotwise serve`
serves slotwise (slotwise.server: same HTTP implementation, same workers, same listening socket).

One tiny JSON GET and one tiny JSON POST with a validated body, no database, no middleware: what
the server, Starlette and FastAPI cost on their own. And, when ``SLOTWISE_DATABASE_URL`` names a
PostgreSQL database, ``GET /ping-db``: the same GET after one prepared ``SELECT 1`` through psycopg's
async pool, as slotwise's fast lane sends its statements — what one database round trip costs on this
machine, the least any read of stored data can cost. `python -m bench.bare_app --port P --workers N`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from slotwise.server import serve

DATABASE_URL = os.environ.get("SLOTWISE_DATABASE_URL", "")
pool: AsyncConnectionPool[Any] | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    if DATABASE_URL.startswith("postgresql"):
        conninfo = DATABASE_URL.replace("postgresql+psycopg://", "postgresql://")
        pool = AsyncConnectionPool(conninfo, min_size=8, max_size=8, open=False,
                                   kwargs={"autocommit": True, "prepare_threshold": 0})
        await pool.open()
    yield
    if pool is not None:
        await pool.close()


app = FastAPI(lifespan=lifespan)


class NewThing(BaseModel):
    name: str


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ping-db")
async def ping_db() -> dict[str, str]:
    assert pool is not None, "GET /ping-db needs SLOTWISE_DATABASE_URL on PostgreSQL"
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT 1")
        await cursor.fetchone()
    return {"status": "ok"}


@app.post("/things", status_code=201)
async def create_thing(body: NewThing) -> dict[str, str]:
    return {"id": "thing_1", "name": body.name}


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the bare FastAPI app as `slotwise serve` would.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    serve("bench.bare_app:app", host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
