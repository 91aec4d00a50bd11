"""Processor webhooks: Stripe's signature scheme, for the sandbox's own events (the Stripe gateway
uses the ``stripe`` library's ``Webhook.construct_event``; both accept the same header), and the
parse of a verified body into a ``WebhookEvent``.

Header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the secret>``. A signature
older than ``TOLERANCE`` seconds is refused so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from slotwise.gateway.base import WebhookEvent
from slotwise.gateway.errors import WebhookRejected

TOLERANCE = 300


def sign(payload: bytes, *, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), b"%d." % timestamp + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(payload: bytes, header: str, *, secret: str, now: float) -> bool:
    """True when one ``v1`` signature in ``header`` matches and its timestamp is recent."""
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value for key, value in parts if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > TOLERANCE:
        return False
    expected = sign(payload, secret=secret, timestamp=timestamp).split("v1=", 1)[1]
    return any(key.strip() == "v1" and hmac.compare_digest(value.strip(), expected) for key, value in parts)


def event_from_payload(payload: bytes) -> WebhookEvent:
    """The event in a body whose signature was already verified."""
    try:
        body: Any = json.loads(payload)
        data = body.get("data", {}).get("object", {})
        event_id, kind = body["id"], body["type"]
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise WebhookRejected("The webhook body is not an event.") from exc
    if not isinstance(event_id, str) or not isinstance(kind, str) or not isinstance(data, dict):
        raise WebhookRejected("The webhook body is not an event.")
    object_id = data.get("id")
    return WebhookEvent(id=event_id, type=kind, object_id=object_id if isinstance(object_id, str) else None,
                        data=data)
