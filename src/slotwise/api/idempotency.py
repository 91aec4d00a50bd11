"""``Idempotency-Key`` for every POST that moves money or capacity.

A key belongs to the caller (the user whose token sent it), never to the organization: another
caller's identical key runs as a request of its own, and the caller's permission for the route is
checked before anything is replayed, so a stored answer never reaches someone who could not have
made the request.

The key is reserved by inserting its row first, in the request's own transaction. A concurrent
request with the same key blocks on that row's unique index (PostgreSQL) or on the write lock
(SQLite) until the first commits, then finds the stored answer and replays it: one charge, one
invoice, however many times a client retries. Refusals are stored and replayed too, except those
that may be answered differently later (a declined card, the hourly cap): fixing the cause and
retrying with the same key runs the request again.

Stored answers keep no secret: API and invitation tokens are shown once, in the first answer, and
a replay gives everything else with a ``replay_note`` saying so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.api.responses import json_body
from slotwise.errors import IdempotencyConflict, InvalidRequest, SlotwiseError
from slotwise.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
SECRET_FIELDS = frozenset({"api_token", "token"})
SECRET_WITHHELD = ("This is a replay of an earlier answer. Secrets (API and invitation tokens) are shown only "
                   "once, in the first answer, and are not kept.")


def caller_scope(user_id: str) -> str:
    """The scope of a user's keys: their own, whatever organization they act in."""
    return f"user:{user_id}"


def _withhold_secrets(value: Any) -> tuple[Any, bool]:
    """``value`` with every secret field set to None, and whether there was one."""
    if isinstance(value, dict):
        found, out = False, dict[str, Any]()
        for name, item in value.items():
            if name in SECRET_FIELDS and item is not None:
                out[name], found = None, True
            else:
                out[name], inner = _withhold_secrets(item)
                found = found or inner
        return out, found
    if isinstance(value, list):
        pairs = [_withhold_secrets(item) for item in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False


def stored_answer(result: dict[str, Any]) -> str:
    """What is kept for replays: the answer without its secrets (and a note when one was withheld)."""
    kept, withheld = _withhold_secrets(result)
    if withheld:
        kept["replay_note"] = SECRET_WITHHELD
    return json.dumps(kept)


def _request_hash(request: Request, body: BaseModel | None) -> str:
    payload = body.model_dump(mode="json") if body is not None else None
    text = json.dumps([request.method, request.url.path, payload], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _replay(record: IdempotencyRecord, request_hash: str) -> JSONResponse:
    if record.request_hash != request_hash or record.status_code == 0:
        raise IdempotencyConflict()
    return JSONResponse(json.loads(record.response_body), status_code=record.status_code,
                        headers={"Idempotent-Replayed": "true"})


def run_idempotent(
    request: Request,
    db: Session,
    *,
    scope: str,
    now: datetime,
    body: BaseModel | None,
    action: Callable[[], BaseModel],
    authorize: Callable[[], None] | None = None,
    status_code: int = 200,
) -> Response:
    """Run ``action`` once per (scope, Idempotency-Key); without a key, just run it.

    ``scope`` is the caller's (:func:`caller_scope`, or "operator"); ``authorize`` raises if the
    caller may not make this request, and runs before a stored answer is looked up.
    """
    if authorize is not None:
        authorize()
    key = request.headers.get("idempotency-key")
    if key is None:
        return json_body(action(), status_code)
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
    request_hash = _request_hash(request, body)
    existing = repo.idempotency_record(db, scope, key)
    if existing is not None:
        return _replay(existing, request_hash)
    record = IdempotencyRecord(scope=scope, key=key, request_hash=request_hash, status_code=0,
                               response_body="", created_at=now)
    try:
        with db.begin_nested():
            db.add(record)
            db.flush()
    except IntegrityError:
        # Another request holding this key committed first: answer as it did.
        db.rollback()
        stored = repo.idempotency_record(db, scope, key)
        if stored is None:
            raise
        return _replay(stored, request_hash)
    result: dict[str, Any]
    savepoint = db.begin_nested()
    try:
        result, code = action().model_dump(mode="json"), status_code
    except SlotwiseError as error:
        if error.keeps:  # an invoice left open for verification: kept, and so is this answer
            savepoint.commit()
        else:
            savepoint.rollback()
        if error.transient:  # e.g. rate_limited: the same request may be answered differently later
            raise
        result, code = error.body(), error.status
    except BaseException:
        savepoint.rollback()
        raise
    else:
        savepoint.commit()
    record.status_code, record.response_body = code, stored_answer(result)
    db.flush()
    return JSONResponse(result, status_code=code)


def claim_once(db: Session, *, scope: str, key: str, now: datetime) -> bool:
    """Reserve a one-time key (a page form's submission id); False if it was already used.

    Called inside the change's own savepoint, so a refused change (a declined card) releases the key
    again. A concurrent duplicate waits on the first's row, as with ``Idempotency-Key``.
    """
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest("That form is not valid. Reload the page and try again.")
    if repo.idempotency_record(db, scope, key) is not None:
        return False
    try:
        with db.begin_nested():
            db.add(IdempotencyRecord(scope=scope, key=key, request_hash="form", status_code=200,
                                     response_body="{}", created_at=now))
            db.flush()
    except IntegrityError:
        return False
    return True
