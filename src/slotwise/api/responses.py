"""Answers serialized once, by pydantic's own JSON encoder.

FastAPI validates a returned model against the route's ``response_model`` and then serializes it —
for a plain ``def`` route on a worker thread of its own. The models here are built by ``present``
from typed values, so the hot routes return them as a ready response instead; ``response_model``
still documents them in the OpenAPI schema (and schemathesis checks the two agree).
"""

from __future__ import annotations

import json

from pydantic import BaseModel
from starlette.responses import Response

from slotwise.errors import SlotwiseError

_BUSY = json.dumps({"error": {"code": "unavailable", "message": "The database is busy. Try again shortly."}})


def json_body(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.__pydantic_serializer__.to_json(model), status_code=status_code, headers=headers,
                    media_type="application/json")


def error_response(error: SlotwiseError) -> Response:
    """A service's refusal, as every route answers it: its stable code, status and headers."""
    return Response(json.dumps(error.body()), status_code=error.status, headers=error.headers() or None,
                    media_type="application/json")


def busy_response() -> Response:
    """The database could not serve in time (no pooled connection, a dropped connection): 503."""
    return Response(_BUSY, status_code=503, headers={"Retry-After": "1"}, media_type="application/json")
