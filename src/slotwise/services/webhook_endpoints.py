"""The operator's webhook endpoints (SPEC §14): register, list, change, delete, rotate the signing
secret, test-send, read the delivery log and replay from it.

A signing secret is returned once, when made, and kept only sealed (``webhook_secrets``). Rotating
keeps the old secret signing beside the new one for ``ROTATION_OVERLAP`` (Standard Webhooks allows
several signatures), so a receiver can switch over without losing a delivery.

Times here are wall-clock times (a rotation's overlap, an endpoint's failing streak): they are about
the endpoint's HTTP traffic, not the billing period.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from slotwise.errors import InvalidRequest, NotFound, SlotwiseError
from slotwise.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookStream, new_id
from slotwise.services import events, webhook_delivery
from slotwise.services.webhook_delivery import Outcome, Sender
from slotwise.services.webhook_secrets import Sealer, new_signing_secret

ROTATION_OVERLAP = timedelta(hours=24)
MAX_URL_LENGTH = 2000  # models.WebhookEndpoint.url
DISABLED_BY_OPERATOR = "Disabled by the operator."


class InvalidUrl(InvalidRequest):
    code, default_message = "invalid_url", "The URL must be an absolute http or https URL of at most 2000 characters."


class UnknownEventType(InvalidRequest):
    code, default_message = "unknown_event_type", "Some of the event types are not ones slotwise sends."


class EndpointDisabled(SlotwiseError):
    code, status, default_message = "endpoint_disabled", 409, "This endpoint is disabled; enable it first."


class DeliveryPending(SlotwiseError):
    code, status = "delivery_pending", 409
    default_message = "This delivery is still pending: the worker sends it; replay a delivered or failed one."


def endpoint_not_found() -> NotFound:
    return NotFound("No such webhook endpoint.")


def check_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_URL_LENGTH or any(ch <= " " or ch == "\x7f" for ch in url):
        raise InvalidUrl(field="url")
    try:
        parts = urlsplit(url)
        port = parts.port  # refuses a port that is not a number in range
    except ValueError:
        raise InvalidUrl(field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or (port is not None and port < 1):
        raise InvalidUrl(field="url")
    return url


def check_event_types(types: Sequence[str] | None) -> str | None:
    """The endpoint's ``event_types`` column: NULL for every type, else a JSON list of known types."""
    if types is None:
        return None
    unknown = sorted({t for t in types if t not in events.EVENT_TYPES})
    if unknown:
        raise UnknownEventType(field="events", unknown=unknown[:20], known=list(events.EVENT_TYPES))
    if not types:
        raise UnknownEventType("Name at least one event type, or leave events out to receive every type.",
                               field="events", unknown=[], known=list(events.EVENT_TYPES))
    return json.dumps(sorted(set(types)))


def event_types_of(endpoint: WebhookEndpoint) -> list[str] | None:
    return None if endpoint.event_types is None else list(json.loads(endpoint.event_types))


@dataclass(frozen=True, slots=True)
class WithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown this once


def create(db: Session, *, sealer: Sealer, url: str, types: Sequence[str] | None, description: str | None,
           now: datetime) -> WithSecret:
    endpoint = WebhookEndpoint(id=new_id("whe"), url=check_url(url), event_types=check_event_types(types),
                               description=description, enabled=True, secret_sealed="", created_at=now,
                               updated_at=now)
    secret = new_signing_secret()
    endpoint.secret_sealed = sealer.seal(secret)
    db.add(endpoint)
    db.flush()
    return WithSecret(endpoint, secret)


def get(db: Session, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    # FOR NO KEY UPDATE: emitters key-share lock the endpoints they owe (events.emit), and need not wait.
    found = db.execute(query.with_for_update(key_share=True) if lock else query).scalar_one_or_none()
    if found is None:
        raise endpoint_not_found()
    return found


def page(db: Session, *, limit: int, after: str | None) -> Sequence[WebhookEndpoint]:
    """Up to ``limit + 1`` endpoints, oldest first, after the one named ``after``."""
    query = select(WebhookEndpoint)
    if after is not None:
        cursor = db.get(WebhookEndpoint, after)
        if cursor is None:
            raise InvalidRequest("starting_after is not one of this list's ids.", field="starting_after")
        query = query.where(or_(WebhookEndpoint.created_at > cursor.created_at,
                                and_(WebhookEndpoint.created_at == cursor.created_at, WebhookEndpoint.id > cursor.id)))
    return db.execute(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id).limit(limit + 1)).scalars().all()


@dataclass(frozen=True, slots=True)
class Changes:
    """What a PATCH sent (a field left out is left as it is; ``events`` sent as null means every type)."""

    url: str | None = None
    events_sent: bool = False
    types: Sequence[str] | None = None
    description_sent: bool = False
    description: str | None = None
    enabled: bool | None = None


def update_endpoint(db: Session, endpoint_id: str, changes: Changes, *, now: datetime) -> WebhookEndpoint:
    """Change an endpoint. Enabling a disabled one clears why it was disabled and its failing streak, and
    makes its waiting streams due now (what it was owed when disabled is sent, in order)."""
    endpoint = get(db, endpoint_id, lock=True)
    if changes.url is not None:
        endpoint.url = check_url(changes.url)
    if changes.events_sent:
        endpoint.event_types = check_event_types(changes.types)
    if changes.description_sent:
        endpoint.description = changes.description
    if changes.enabled is True and not endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, None, None
        db.execute(update(WebhookStream).where(WebhookStream.endpoint_id == endpoint_id,
                                               WebhookStream.run_at.is_not(None))
                   .values(run_at=now).execution_options(synchronize_session=False))
    elif changes.enabled is False and endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = False, DISABLED_BY_OPERATOR
    endpoint.updated_at = now
    db.flush()
    return endpoint


def remove(db: Session, endpoint_id: str) -> None:
    """Delete the endpoint with everything it was owed and its log (the events themselves stay)."""
    get(db, endpoint_id)
    db.execute(delete(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id))
    db.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    db.execute(delete(WebhookStream).where(WebhookStream.endpoint_id == endpoint_id))
    db.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


def rotate(db: Session, endpoint_id: str, *, sealer: Sealer, now: datetime) -> WithSecret:
    """A new signing secret; the current one goes on signing beside it for ``ROTATION_OVERLAP`` (a
    secret rotated before is dropped: two at most)."""
    endpoint = get(db, endpoint_id, lock=True)
    secret = new_signing_secret()
    endpoint.previous_secret_sealed, endpoint.previous_secret_until = endpoint.secret_sealed, now + ROTATION_OVERLAP
    endpoint.secret_sealed = sealer.seal(secret)
    endpoint.updated_at = now
    db.flush()
    return WithSecret(endpoint, secret)


def send_test(db: Session, endpoint_id: str, *, at: datetime) -> tuple[str, str]:
    """A ``webhook.test`` event for this endpoint only, delivered by the worker like every other; the
    event's id and the delivery's."""
    endpoint = get(db, endpoint_id, lock=True)
    if not endpoint.enabled:
        raise EndpointDisabled()
    return events.emit_test(db, endpoint_id=endpoint_id, at=at)


# --- the delivery log ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoggedDelivery:
    delivery: WebhookDelivery
    event_id: str
    event_type: str
    attempts: list[WebhookAttempt]


def deliveries_page(db: Session, endpoint_id: str, *, limit: int, after: str | None,
                    status: str | None = None) -> list[LoggedDelivery]:
    """Up to ``limit + 1`` of the endpoint's deliveries, newest event first, each with its attempts
    (oldest first), after the delivery named ``after``."""
    get(db, endpoint_id)
    query = (select(WebhookDelivery, Event.id, Event.type).join(Event, Event.seq == WebhookDelivery.event_seq)
             .where(WebhookDelivery.endpoint_id == endpoint_id))
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if after is not None:
        cursor = db.execute(select(WebhookDelivery.event_seq).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.id == after)).scalar_one_or_none()
        if cursor is None:
            raise InvalidRequest("starting_after is not one of this list's ids.", field="starting_after")
        query = query.where(WebhookDelivery.event_seq < cursor)
    rows = db.execute(query.order_by(WebhookDelivery.event_seq.desc()).limit(limit + 1)).all()
    ids = [row[0].id for row in rows]
    attempts: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in ids}
    if ids:
        for attempt in db.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids))
                                  .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)).scalars():
            attempts[attempt.delivery_id].append(attempt)
    return [LoggedDelivery(row[0], row[1], row[2], attempts[row[0].id]) for row in rows]


def count_attempts(db: Session, delivery_id: str) -> int:
    return int(db.execute(select(func.count()).where(WebhookAttempt.delivery_id == delivery_id)).scalar_one())


@dataclass(frozen=True, slots=True)
class Replayed:
    attempt_id: str
    delivery_id: str
    event_id: str
    attempted_at: datetime
    outcome: Outcome
    status: str  # the delivery's, after the replay


def replay(sessions: sessionmaker[Session], endpoint_id: str, delivery_id: str, *, sealer: Sealer, sender: Sender,
           now: datetime) -> Replayed:
    """Send a delivered or failed delivery's event again now, with its ``webhook-id``, logged as a
    replay. No transaction is open while it is sent. A replay that gets a 2xx makes a failed delivery
    delivered (and ends the endpoint's failing streak). A pending delivery is the worker's to send."""
    with sessions.begin() as db:
        endpoint = get(db, endpoint_id)
        delivery = db.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                                            WebhookDelivery.endpoint_id == endpoint_id)
                              ).scalar_one_or_none()
        if delivery is None:
            raise NotFound("No such delivery of this endpoint.")
        if delivery.status == "pending":
            raise DeliveryPending()
        out = webhook_delivery.outgoing(db, endpoint, delivery, sealer=sealer, now=now)
    outcome = webhook_delivery.send(sender, out, now=now)
    with sessions.begin() as db:
        if db.get(WebhookDelivery, delivery_id) is None:  # the endpoint was deleted meanwhile
            raise endpoint_not_found()
        attempt_id = webhook_delivery.log_attempt(db, out, outcome, at=now, replay=True)
        settled = db.get(WebhookDelivery, delivery_id)
        assert settled is not None
        if outcome.ok and settled.status == "failed":
            settled.status, settled.delivered_at = "delivered", now
            endpoint = get(db, endpoint_id)
            endpoint.failing_since = None
        return Replayed(attempt_id, delivery_id, out.event_id, now, outcome, settled.status)
