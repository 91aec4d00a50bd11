"""The HTTP floor for bench/http.py: the cheapest FastAPI app, served exactly as `slotwise serve`
serves slotwise (slotwise.server: same HTTP implementation, same workers, same listening socket).

One tiny JSON GET and one tiny JSON POST with a validated body, no database, no middleware: what
the server, Starlette and FastAPI cost on their own. `python -m bench.bare_app --port P --workers N`.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI
from pydantic import BaseModel

from slotwise.server import serve

app = FastAPI()


class NewThing(BaseModel):
    name: str


@app.get("/ping")
async def ping() -> dict[str, str]:
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
