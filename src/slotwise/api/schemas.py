"""Request and response bodies. Money is an integer of minor units beside its ``currency``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from slotwise.catalog import MAX_SLOTS_PER_CHANGE, MIN_SLOTS_PER_CHANGE
from slotwise.errors import InvalidRequest

MAX_CLOCK_STEP_DAYS = 3660  # one move of the simulated clock; every renewal on the way is run

Quantity = Annotated[int, Field(strict=True, ge=MIN_SLOTS_PER_CHANGE, le=MAX_SLOTS_PER_CHANGE)]
# No control characters in anything stored as text: PostgreSQL refuses NUL outright (a 500, not a
# 4xx), SQLite would keep it, and neither belongs in a name or an address.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=r"^[^\x00-\x1f\x7f]+$")]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320,
                                         pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
CardNumber = Annotated[str, StringConstraints(min_length=12, max_length=30, pattern=r"^[0-9 -]+$")]
PlanCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------------------

class CreateOrganization(Body):
    name: Name
    owner_email: Email
    owner_name: Name | None = None
    owner_password: Password | None = None
    plan: PlanCode = "free"
    card_number: CardNumber | None = None


class CreateUser(Body):
    email: Email
    name: Name | None = None
    password: Password | None = None
    role: Literal["admin", "member"]


class MoveClock(Body):
    advance_days: Annotated[int, Field(strict=True, ge=0, le=MAX_CLOCK_STEP_DAYS)] | None = None
    to: datetime | None = None

    @field_validator("to", mode="before")
    @classmethod
    def iso_text(cls, value: object) -> object:
        # Pydantic would read a bare number as epoch seconds; the document promises an ISO 8601 string.
        if value is not None and not isinstance(value, str):
            raise ValueError("'to' must be an ISO 8601 string, e.g. 2026-12-15T00:00:00Z")
        return value

    @model_validator(mode="after")
    def exactly_one(self) -> MoveClock:
        if (self.advance_days is None) == (self.to is None):
            raise ValueError("give exactly one of advance_days or to")
        if self.to is not None and self.to.tzinfo is None:
            raise ValueError("'to' needs a time zone, e.g. 2026-12-15T00:00:00Z")
        return self


class PreviewRequest(Body):
    action: Literal["add", "remove"]
    quantity: Quantity | None = None
    all: bool = False

    @model_validator(mode="after")
    def quantity_or_all(self) -> PreviewRequest:
        if self.action == "add" and (self.quantity is None or self.all):
            raise ValueError("adding needs a quantity")
        if self.action == "remove" and (self.quantity is None) == (not self.all):
            raise ValueError("give a quantity or all: true")
        return self


class AddSlots(Body):
    quantity: Quantity


class RemoveSlots(Body):
    quantity: Quantity | None = None
    all: bool = False

    @model_validator(mode="after")
    def quantity_or_all(self) -> RemoveSlots:
        if (self.quantity is None) == (not self.all):
            raise ValueError("give a quantity or all: true")
        return self


class CreateAgent(Body):
    name: Name


class CreateInvitation(Body):
    email: Email
    role: Literal["admin", "member"] = "member"


class AcceptInvitation(Body):
    name: Name | None = None
    password: Password


class ChangePlan(Body):
    plan: PlanCode


class PaymentMethodIn(Body):
    """Exactly one: ``card_number`` (the sandbox's own form) or ``payment_method`` (the processor's id
    for a card entered on its form, as Stripe.js returns it)."""

    card_number: CardNumber | None = None
    payment_method: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _exactly_one(self) -> PaymentMethodIn:
        if (self.card_number is None) == (self.payment_method is None):
            raise ValueError("send either card_number or payment_method")
        return self


# --- lists: one page at a time (SPEC §6) --------------------------------------------------------

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
LONGEST_ID = 64  # every id slotwise makes is far shorter (models.Id)
C = TypeVar("C")


def unknown_cursor() -> InvalidRequest:
    return InvalidRequest("starting_after must be the id of an item of this list, in this organization.",
                          field="starting_after")


def known_cursor(found: C | None) -> C:
    """The item ``starting_after`` names, or the one refusal for any id that names none."""
    if found is None:
        raise unknown_cursor()
    return found


def _digits_only(value: object) -> object:
    # Pydantic would also read "1.0", "+5", " 5" and "1_0" as numbers; a limit is written in digits.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return value


def _plausible_id(value: str | None) -> str | None:
    # No id is long or holds a control character, and PostgreSQL would refuse a NUL in the lookup
    # (a 500). A SlotwiseError is not a ValueError, so pydantic lets it through to the one handler:
    # such a cursor is refused exactly like an unknown one.
    if value is not None and (len(value) > LONGEST_ID or any(ch < " " or ch == "\x7f" for ch in value)):
        raise unknown_cursor()
    return value


PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="How many items to answer (1–100)."),
                      BeforeValidator(_digits_only)]
StartingAfter = Annotated[str | None, Query(description="The id of the last item of the previous page; "
                                                        "this page starts right after it."),
                          AfterValidator(_plausible_id)]


# --- responses ----------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, in the list's order. When ``has_more``, the next page is asked for with
    ``starting_after`` set to the id of this page's last item."""

    data: list[T]
    has_more: bool


class PlanOut(BaseModel):
    code: str
    name: str
    price: int | None
    currency: str
    agents: int | None
    members: int | None
    teams: bool
    credits: int | None
    self_serve: bool


class PeriodOut(BaseModel):
    start: datetime
    end: datetime


class SubscriptionOut(BaseModel):
    id: str
    plan: str
    status: Literal["active", "past_due", "unpaid", "canceled"]
    plan_price: int
    currency: str
    current_period: PeriodOut
    next_billing_date: datetime
    days_remaining: int
    scheduled_plan: str | None
    cancel_at_period_end: bool = Field(False, description="It ends at next_billing_date and the organization "
                                                          "moves to Free (POST …/subscription/resume undoes it).")


class CapacityOut(BaseModel):
    addon: str
    included: int
    active_slots: int
    renewal_slots: int
    total: int
    renewal_total: int
    used: int


class PaymentMethodOut(BaseModel):
    brand: str
    last4: str


class OrganizationOut(BaseModel):
    id: str
    name: str
    plan: PlanOut
    subscription: SubscriptionOut | None
    capacity: dict[str, CapacityOut]
    monthly_total: int
    currency: str
    payment_method: PaymentMethodOut | None
    created_at: datetime


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    created_at: datetime


def _replay_note() -> Any:
    return Field(default=None, description="Set on a replayed answer (Idempotency-Key): its secret is withheld.")


SHOWN_ONCE = "Shown once, in the first answer; null in a replay (only a hash is kept)."


class UserWithToken(UserOut):
    api_token: str | None = Field(description=SHOWN_ONCE)
    replay_note: str | None = _replay_note()


class CreatedOrganization(BaseModel):
    id: str
    name: str
    plan: str
    owner: UserWithToken
    created_at: datetime
    replay_note: str | None = _replay_note()


class InvoiceLineOut(BaseModel):
    description: str
    kind: str
    code: str
    quantity: int
    unit_price: int
    amount: int
    currency: str
    period_start: datetime
    period_end: datetime
    days_left: int
    days_in_period: int
    proration: str


class InvoiceOut(BaseModel):
    id: str
    number: int
    kind: str
    status: Literal["open", "paid", "void"]
    currency: str
    total: int
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    lines: list[InvoiceLineOut]
    # Set while the payment waits for the customer's bank (SCA): the Owner's page that completes it.
    verify_url: str | None = None


class VerifyIn(Body):
    """What the sandbox's stand-in bank page answers; ignored with a real processor, whose own page
    has talked to the bank already."""

    verdict: Literal["approve", "fail"] | None = None


class AddonOut(BaseModel):
    code: str
    name: str
    resource: str
    price_per_slot: int
    currency: str
    available: bool
    reason: str | None
    active_slots: int
    renewal_slots: int
    scheduled_removal: int
    monthly_cost: int
    effective_at: datetime | None


class PreviewOut(BaseModel):
    addon: str
    action: Literal["add", "remove"]
    quantity: int
    price_per_slot: int
    currency: str
    charge_now: int
    days_left: int | None
    days_in_period: int | None
    proration: str | None
    current_slots: int
    new_slots: int
    current_capacity: int
    new_capacity: int
    current_monthly_total: int
    new_monthly_total: int
    effective_at: datetime | None
    allowed: bool
    reason: str | None
    message: str | None
    must_free: int | None


class SlotChangeOut(BaseModel):
    message: str
    addon: AddonOut
    invoice: InvoiceOut | None
    effective_at: datetime | None


class AgentOut(BaseModel):
    id: str
    name: str
    status: Literal["active", "archived"]
    archived_at: datetime | None
    created_at: datetime
    notice: str | None = None
    restored_slots: int = 0


class InvitationOut(BaseModel):
    id: str
    email: str
    role: str
    created_at: datetime


class CreatedInvitation(InvitationOut):
    token: str | None = Field(description=SHOWN_ONCE)
    restored_slots: int
    replay_note: str | None = _replay_note()


class PlanChangeOut(BaseModel):
    message: str
    kind: str
    plan: str
    effective_at: datetime
    invoice: InvoiceOut | None


class PaymentMethodUpdated(BaseModel):
    payment_method: PaymentMethodOut
    retried_invoices: list[InvoiceOut]
    voided_invoices: list[str] = Field(default_factory=list,
                                       description="Stale invoices of an unpaid subscription, voided by its restart.")
    restart_invoice: InvoiceOut | None = Field(
        default=None, description="The new period of an unpaid subscription, restarted and billed in full.")


class SweepOut(BaseModel):
    at: datetime
    renewed: list[str]
    canceled: list[str]
    payments_failed: list[str]
    retried_paid: list[str]
    retried_failed: list[str]
    unpaid: list[str]
    reconciled: list[str] = Field(description="Invoices paid with a payment found at the processor (a crash "
                                              "between its charge and slotwise's commit).")
    refunded: list[str] = Field(description="Processor payments for purchases slotwise never recorded, refunded "
                                            "in full.")
    expired: list[str] = Field(description="Purchase invoices made void: their bank verification was not "
                                           "completed in time.")
