"""Request and response bodies of the operator's webhook endpoints (SPEC §14)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from slotwise.api.schemas import Body
from slotwise.services.webhook_endpoints import MAX_URL_LENGTH

Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH)]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
EventTypes = Annotated[list[EventType], Field(max_length=50, description=(
    "The event types this endpoint receives; left out or null: every type."))]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class EndpointIn(Body):
    url: Url = Field(description="An absolute http or https URL.")
    events: EventTypes | None = None
    description: Description | None = None


class EndpointChanges(Body):
    """Fields left out are left as they are; ``events: null`` means every type."""

    url: Url | None = None
    events: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = Field(default=None, description="true re-enables a disabled endpoint (its reason is "
                                                           "cleared and what it is owed is sent, in order).")


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str] | None = Field(description="null: every type.")
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None = Field(description="When its deliveries started failing without a break.")
    previous_secret_until: datetime | None = Field(
        description="After a rotation: until when the previous secret also signs.")
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The signing secret (Standard Webhooks, whsec_…), shown this once.")


class TestSent(BaseModel):
    event_id: str = Field(description="The webhook-id the test request carries.")
    delivery_id: str
    status: DeliveryStatus


class AttemptOut(BaseModel):
    id: str
    attempted_at: datetime
    status_code: int | None = Field(description="null: no answer (refused, timed out).")
    latency_ms: int
    response_excerpt: str | None
    error: str | None
    replay: bool


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[AttemptOut] = Field(description="Every request made for it, oldest first.")


class ReplayOut(BaseModel):
    delivery_id: str
    event_id: str
    status: DeliveryStatus = Field(description="The delivery's status after the replay.")
    attempt: AttemptOut
