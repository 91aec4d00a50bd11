"""Delivering events to webhook endpoints (SPEC §14), the worker's side of the outbox.

What an endpoint is owed is a *stream* per organization (``webhook_streams``): its pending deliveries go
out in ``event_seq`` order, one worker at a time. A worker claims a due stream by committing a lease
(``locked_until``; PostgreSQL skips streams another worker is claiming, SQLite's BEGIN IMMEDIATE
serializes the claims), then, for each pending delivery in order, renews the lease in a short
transaction, sends the request with no transaction open, and records the attempt in another short
transaction, which checks the lease is still its own. It stops at the first failure, leaving the
stream due at the delivery's next try. So:

* at least once: a delivery is ``delivered`` only after a 2xx was recorded; a worker killed mid-send
  leaves it pending and its lease runs out (``LEASE``, far longer than one send may take), then
  another worker sends it again, with the same ``webhook-id``;
* in order, never two at once, per (endpoint, organization), across machines: the lease is a row.

Retries follow the Standard Webhooks schedule (``RETRY_DELAYS``), or a later ``Retry-After``; after
the last try the delivery is ``failed`` and the stream moves on. 410 Gone disables the endpoint; so
does failing without a break for more than ``DISABLE_AFTER``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from slotwise import __version__
from slotwise.models import (
    Event,
    UTCDateTime,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStream,
    new_id,
)
from slotwise.services.webhook_secrets import Sealer

# After the 1st, 2nd … 7th failed try; the 8th failure is the last (about 27.6 hours in all).
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
MAX_RETRY_AFTER = timedelta(hours=10)  # a Retry-After beyond the schedule's longest step is read as that
DISABLE_AFTER = timedelta(days=5)
# A stream's lease: renewed before each send, and far longer than one send may take (SEND_DEADLINE).
LEASE = timedelta(seconds=60)
SEND_DEADLINE = 15.0  # seconds, the whole request: connect, send, read an excerpt of the answer
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXCERPT = 500  # models.WebhookAttempt.response_excerpt
ERROR_LENGTH = 300  # models.WebhookAttempt.error
PER_CLAIM = 100  # deliveries sent on one claim before the stream goes back in line behind the others
USER_AGENT = f"slotwise-webhooks/{__version__}"


# --- what is sent -----------------------------------------------------------------------------------

def body_of(*, event_id: str, type: str, created_at: datetime, organization: str | None, payload: str) -> str:
    """The request body, the same on every try: ``{"id", "type", "created_at", "organization", "data"}``."""
    return json.dumps({"id": event_id, "type": type, "created_at": created_at.isoformat(),
                       "organization": organization, "data": json.loads(payload)}, separators=(",", ":"))


def signature(secrets: list[str], *, msg_id: str, at: datetime, body: str) -> str:
    """``v1,…`` for each signing secret, space-separated (a rotated secret signs beside its successor)."""
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def headers(secrets: list[str], *, msg_id: str, at: datetime, body: str) -> dict[str, str]:
    at = at.astimezone(UTC)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(secrets, msg_id=msg_id, at=at, body=body)}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's result, as the delivery log keeps it."""

    status_code: int | None  # None: no answer
    latency_ms: int
    excerpt: str | None
    error: str | None
    retry_after: timedelta | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """``Retry-After`` in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def _clean(text: str, limit: int) -> str:
    # PostgreSQL refuses a NUL in text; an endpoint's answer may hold anything.
    return text.replace("\x00", "\ufffd")[:limit]


class Sender:
    """Sends webhook requests over one pooled HTTP client, short timeouts, no redirects followed."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def send(self, url: str, body: str, request_headers: dict[str, str], *, now: datetime) -> Outcome:
        started = time.monotonic()
        try:
            with self.client.stream("POST", url, content=body.encode(), headers=request_headers) as response:
                excerpt = b""
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT or time.monotonic() - started > SEND_DEADLINE:
                        break
                latency = int((time.monotonic() - started) * 1000)
                return Outcome(response.status_code, latency,
                               _clean(excerpt.decode("utf-8", "replace"), EXCERPT) or None, None,
                               retry_after(response.headers.get("retry-after"), now=now))
        except Exception as error:  # refused, timed out, reset, a URL httpx will not send to: all logged as tried
            latency = int((time.monotonic() - started) * 1000)
            return Outcome(None, latency, None, _clean(f"{type(error).__name__}: {error}", ERROR_LENGTH))


def next_delay(attempts: int, outcome: Outcome) -> timedelta:
    """How long after its ``attempts``-th failed try a delivery is tried again: the schedule's step,
    or the endpoint's ``Retry-After`` if that is later (up to ``MAX_RETRY_AFTER``)."""
    scheduled = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    asked = min(outcome.retry_after, MAX_RETRY_AFTER) if outcome.retry_after is not None else timedelta(0)
    return max(scheduled, asked)


# --- one delivery, read for sending ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outgoing:
    delivery_id: str
    endpoint_id: str
    event_id: str
    url: str
    body: str
    secrets: list[str]


class Sealed(Protocol):
    secret_sealed: str
    previous_secret_sealed: str | None
    previous_secret_until: datetime | None


def secrets_of(endpoint: Sealed, sealer: Sealer, now: datetime) -> list[str]:
    """The endpoint's signing secrets, opened: its own, and a rotated one until its overlap ends."""
    found = [sealer.open(endpoint.secret_sealed)]
    if endpoint.previous_secret_sealed and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        found.append(sealer.open(endpoint.previous_secret_sealed))
    return found


def outgoing(db: Session, endpoint: WebhookEndpoint, delivery: WebhookDelivery, *, sealer: Sealer,
             now: datetime) -> Outgoing:
    event = db.execute(select(Event).where(Event.seq == delivery.event_seq)).scalar_one()
    body = body_of(event_id=event.id, type=event.type, created_at=event.created_at, organization=event.org_id,
                   payload=event.payload)
    return Outgoing(delivery.id, endpoint.id, event.id, endpoint.url, body, secrets_of(endpoint, sealer, now))


def send(sender: Sender, out: Outgoing, *, now: datetime) -> Outcome:
    return sender.send(out.url, out.body, headers(out.secrets, msg_id=out.event_id, at=now, body=out.body), now=now)


_INSERT_ATTEMPT = insert(WebhookAttempt)


def log_attempt(db: Session, out: Outgoing, outcome: Outcome, *, at: datetime, replay: bool = False) -> str:
    attempt_id = new_id("wha")
    db.connection().execute(_INSERT_ATTEMPT, [{
        "id": attempt_id, "delivery_id": out.delivery_id, "endpoint_id": out.endpoint_id, "attempted_at": at,
        "status_code": outcome.status_code, "latency_ms": outcome.latency_ms, "response_excerpt": outcome.excerpt,
        "error": outcome.error, "replay": replay}])
    return attempt_id


# --- a stream: claimed, sent in order, released ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClaimedStream:
    endpoint_id: str
    stream_key: str
    lease: datetime  # the ``locked_until`` this worker wrote: the proof the stream is still its own


def claim_stream(db: Session, *, now: datetime, lease: timedelta = LEASE) -> ClaimedStream | None:
    """Lease the stream due first of an enabled endpoint that no live lease holds; the caller commits
    at once, so the lease is visible to every other worker."""
    row = db.execute(
        select(WebhookStream.endpoint_id, WebhookStream.stream_key)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookStream.endpoint_id)
        .where(WebhookEndpoint.enabled, WebhookStream.run_at <= now,
               or_(WebhookStream.locked_until.is_(None), WebhookStream.locked_until <= now))
        .order_by(WebhookStream.run_at).limit(1)
        .with_for_update(skip_locked=True, of=WebhookStream)).first()
    if row is None:
        return None
    until = now + lease
    db.execute(update(WebhookStream).where(WebhookStream.endpoint_id == row.endpoint_id,
                                           WebhookStream.stream_key == row.stream_key)
               .values(locked_until=until).execution_options(synchronize_session=False))
    return ClaimedStream(row.endpoint_id, row.stream_key, until)


# The per-event statements, built once (a delivery is the worker's hot path), run on the session's
# connection without the ORM.
def _p(name: str) -> Any:
    return bindparam(name, type_=UTCDateTime())


_STREAM = and_(WebhookStream.endpoint_id == bindparam("b_endpoint"),
               WebhookStream.stream_key == bindparam("b_stream"))
_LOCK_STREAM = select(WebhookStream.locked_until).where(_STREAM).with_for_update()
_SET_STREAM = update(WebhookStream).where(_STREAM).values(run_at=_p("run_at"), locked_until=_p("locked_until"))
_ENDPOINT = select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.enabled, WebhookEndpoint.secret_sealed,
                   WebhookEndpoint.previous_secret_sealed, WebhookEndpoint.previous_secret_until,
                   WebhookEndpoint.failing_since).where(WebhookEndpoint.id == bindparam("b_endpoint"))
_HEAD = (select(WebhookDelivery.id, WebhookDelivery.next_attempt_at, Event.id.label("event_id"), Event.type,
                Event.created_at, Event.org_id, Event.payload)
         .join(Event, Event.seq == WebhookDelivery.event_seq)
         .where(WebhookDelivery.endpoint_id == bindparam("b_endpoint"),
                WebhookDelivery.stream_key == bindparam("b_stream"), WebhookDelivery.status == "pending")
         .order_by(WebhookDelivery.event_seq).limit(1))
_TRIED = (update(WebhookDelivery).where(WebhookDelivery.id == bindparam("b_delivery"),
                                        WebhookDelivery.status == "pending")
          .values(attempts=WebhookDelivery.attempts + 1).returning(WebhookDelivery.attempts))
_SETTLE = (update(WebhookDelivery).where(WebhookDelivery.id == bindparam("b_delivery"))
           .values(status=bindparam("status"), delivered_at=_p("delivered_at"),
                   next_attempt_at=_p("next_attempt_at")))
_ANSWERING = (update(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("b_endpoint"),
                                            WebhookEndpoint.failing_since.is_not(None)).values(failing_since=None))
_FAILING = (update(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("b_endpoint"))
            .values(failing_since=_p("failing_since")))
_DISABLE = (update(WebhookEndpoint).where(WebhookEndpoint.id == bindparam("b_endpoint"))
            .values(enabled=False, disabled_reason=bindparam("reason"), updated_at=_p("at")))


def _lock(conn: Connection, stream: ClaimedStream) -> bool:
    """Lock the stream's row (an emitting transaction holds it while it marks the stream due); True
    if this worker's lease still holds it."""
    held = conn.execute(_LOCK_STREAM, _keys(stream)).first()
    return held is not None and held.locked_until == stream.lease


def _keys(stream: ClaimedStream) -> dict[str, str]:
    return {"b_endpoint": stream.endpoint_id, "b_stream": stream.stream_key}


def _release(conn: Connection, stream: ClaimedStream, run_at: datetime | None) -> None:
    conn.execute(_SET_STREAM, {**_keys(stream), "run_at": run_at, "locked_until": None})


def next_outgoing(db: Session, stream: ClaimedStream, *, sealer: Sealer, now: datetime,
                  lease: timedelta = LEASE, locked: bool = False) -> tuple[Outgoing, ClaimedStream] | None:
    """The stream's head delivery if it is due, with the lease renewed; None (the stream released,
    due at its head's next try, or not at all when nothing is pending) when there is nothing to send
    now. The stream row is locked first (``locked``: by the caller, in this transaction), so an event
    committed meanwhile is either seen here or marks the stream due after this transaction."""
    conn = db.connection()
    if not locked and not _lock(conn, stream):
        return None
    endpoint = conn.execute(_ENDPOINT, {"b_endpoint": stream.endpoint_id}).first()
    if endpoint is None or not endpoint.enabled:
        if endpoint is not None:  # left due: re-enabling the endpoint sends it
            conn.execute(update(WebhookStream).where(_STREAM).values(locked_until=None), _keys(stream))
        return None
    head = conn.execute(_HEAD, _keys(stream)).first()
    if head is None:
        _release(conn, stream, None)
        return None
    if head.next_attempt_at is not None and head.next_attempt_at > now:
        _release(conn, stream, head.next_attempt_at)
        return None
    renewed = replace(stream, lease=now + lease)
    conn.execute(_SET_STREAM, {**_keys(stream), "run_at": now, "locked_until": renewed.lease})
    body = body_of(event_id=head.event_id, type=head.type, created_at=head.created_at, organization=head.org_id,
                   payload=head.payload)
    return Outgoing(head.id, endpoint.id, head.event_id, endpoint.url, body, secrets_of(endpoint, sealer, now)), renewed


def record(db: Session, stream: ClaimedStream, out: Outgoing, outcome: Outcome, *, at: datetime) -> bool:
    """Log the attempt and settle the delivery; True if the stream goes on to its next delivery (its
    row locked, the lease still this worker's).

    Only the holder of the lease changes the delivery (a worker whose lease lapsed mid-send only logs
    what it did: the new holder sends again, at least once)."""
    conn = db.connection()
    ours = _lock(conn, stream)
    endpoint = conn.execute(_ENDPOINT, {"b_endpoint": stream.endpoint_id}).first()
    if endpoint is None:  # deleted meanwhile, with all it was owed
        return False
    log_attempt(db, out, outcome, at=at)
    tried = conn.execute(_TRIED, {"b_delivery": out.delivery_id}).first() if ours else None
    if tried is None:  # not ours any more, or settled meanwhile
        return False
    attempts = int(tried.attempts)
    if outcome.ok:
        conn.execute(_SETTLE, {"b_delivery": out.delivery_id, "status": "delivered", "delivered_at": at,
                               "next_attempt_at": None})
        if endpoint.failing_since is not None:
            conn.execute(_ANSWERING, {"b_endpoint": stream.endpoint_id})
        return True
    reason = None
    if outcome.status_code == 410:
        reason = f"The endpoint answered 410 Gone at {at.isoformat(timespec='seconds')}."
    else:
        failing_since = endpoint.failing_since or at
        if endpoint.failing_since is None:
            conn.execute(_FAILING, {"b_endpoint": stream.endpoint_id, "failing_since": at})
        if at - failing_since > DISABLE_AFTER:
            reason = f"Every delivery failed for more than 5 days, since {failing_since.isoformat(timespec='seconds')}."
    if reason is not None:
        conn.execute(_DISABLE, {"b_endpoint": stream.endpoint_id, "reason": reason, "at": at})
    enabled = reason is None
    if attempts >= MAX_ATTEMPTS and outcome.status_code != 410:
        conn.execute(_SETTLE, {"b_delivery": out.delivery_id, "status": "failed", "delivered_at": None,
                               "next_attempt_at": None})
        if enabled:
            return True
        _release(conn, stream, at)
        return False
    retry_at = at + next_delay(attempts, outcome) if enabled else at
    conn.execute(_SETTLE, {"b_delivery": out.delivery_id, "status": "pending", "delivered_at": None,
                           "next_attempt_at": retry_at})
    _release(conn, stream, retry_at)
    return False


def run_stream(sessions: sessionmaker[Session], stream: ClaimedStream, *, sender: Sender, sealer: Sealer,
               wall_clock: Callable[[], datetime], lease: timedelta = LEASE) -> int:
    """Send the claimed stream's due deliveries in order, none inside a transaction: each attempt is
    recorded, and the next delivery read (the lease renewed), in one short transaction; how many
    requests were made."""
    sent = 0
    with sessions.begin() as db:
        found = next_outgoing(db, stream, sealer=sealer, now=wall_clock(), lease=lease)
    while found is not None:
        out, stream = found
        outcome = send(sender, out, now=wall_clock())
        sent += 1
        with sessions.begin() as db:
            if not record(db, stream, out, outcome, at=wall_clock()):
                return sent
            if sent >= PER_CLAIM:  # its turn is over: due again, behind the streams already waiting
                _release(db.connection(), stream, wall_clock())
                return sent
            found = next_outgoing(db, stream, sealer=sealer, now=wall_clock(), lease=lease, locked=True)
    return sent


def deliver_due(sessions: sessionmaker[Session], *, sender: Sender, sealer: Sealer,
                wall_clock: Callable[[], datetime], lease: timedelta = LEASE) -> bool:
    """Claim one due stream and send what it owes; False when no stream was due."""
    with sessions.begin() as db:
        stream = claim_stream(db, now=wall_clock(), lease=lease)
    if stream is None:
        return False
    run_stream(sessions, stream, sender=sender, sealer=sealer, wall_clock=wall_clock, lease=lease)
    return True
