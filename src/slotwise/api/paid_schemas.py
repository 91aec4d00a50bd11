"""Request and response bodies of paid agents (SPEC §13)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from slotwise.api.schemas import Body, CardNumber, Email
from slotwise.services.paid_access import MAX_ACCESS_DAYS, MAX_MESSAGE_CREDITS

Currency = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z]{3}$")]
VisitorToken = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
CheckoutId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class PaidConfigIn(Body):
    price: int = Field(strict=True, gt=0, le=100_000_000, description="Minor units (cents).")
    currency: Currency
    access_days: int = Field(strict=True, ge=1, le=MAX_ACCESS_DAYS)
    message_credits: int = Field(strict=True, ge=1, le=MAX_MESSAGE_CREDITS)


class AccessIn(Body):
    mode: Literal["free", "restricted", "paid"]
    paid: PaidConfigIn | None = None


class PaidConfigOut(BaseModel):
    price: int
    currency: str
    access_days: int
    message_credits: int


class AgentAccessOut(BaseModel):
    agent_id: str
    mode: Literal["free", "restricted", "paid"]
    paid: PaidConfigOut | None
    paywall_url: str | None = Field(description="The public page where visitors buy a pass (paid agents).")


class ContactIn(Body):
    email: Email


class ContactOut(BaseModel):
    id: str
    email: str
    source: Literal["purchase", "api"]
    created_at: datetime


class PassOut(BaseModel):
    id: str
    agent_id: str
    visitor_email: str
    status: Literal["active", "expired", "used_up", "refunded"]
    price: int
    currency: str
    platform_fee: int
    net: int
    access_days: int
    message_credits: int
    credits_left: int
    expires_at: datetime
    created_at: datetime
    refunded_at: datetime | None


class VisitorIn(Body):
    visitor_token: VisitorToken | None = None
    visitor_email: Email | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VisitorIn:
        if (self.visitor_token is None) == (self.visitor_email is None):
            raise ValueError("send either visitor_token or visitor_email")
        return self


class AccessPassOut(BaseModel):
    id: str
    status: Literal["active", "expired", "used_up", "refunded"]
    credits_left: int
    expires_at: datetime


class AccessOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    allowed: bool
    reason: Literal["none", "agent_not_public", "not_a_contact", "no_pass", "expired", "credits_used",
                    "org_out_of_credits"]
    pass_: AccessPassOut | None = Field(alias="pass", serialization_alias="pass")


class MessageIn(VisitorIn):
    reference: Reference
    model: Literal["standard", "premium"] = "standard"


class BalanceOut(BaseModel):
    plan: int
    topup: int
    total: int


class MessageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    reference: str
    cost: int
    replayed: bool
    pass_: AccessPassOut | None = Field(alias="pass", serialization_alias="pass")
    balance: BalanceOut


class PaywallOut(BaseModel):
    agent_id: str
    agent_name: str
    organization: str
    headline: str
    price: int
    currency: str
    access_days: int
    message_credits: int


class PassCheckoutIn(Body):
    """What the paywall posts: the visitor's email and exactly one of ``card_number`` (the sandbox's
    own form) or ``payment_method`` (the processor's id), with the form's one-time ``checkout`` id."""

    email: Email
    card_number: CardNumber | None = None
    payment_method: str | None = Field(default=None, min_length=1, max_length=255)
    checkout: CheckoutId

    @model_validator(mode="after")
    def _exactly_one(self) -> PassCheckoutIn:
        if (self.card_number is None) == (self.payment_method is None):
            raise ValueError("send either card_number or payment_method")
        return self


class PassVerifyIn(Body):
    checkout: CheckoutId
    verdict: Literal["approve", "fail"] | None = Field(
        default=None, description="The sandbox's stand-in bank's answer; a real processor's is its own.")


class PassCheckoutOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pass_: PassOut = Field(alias="pass", serialization_alias="pass")
    visitor_token: str | None = Field(description="Shown once; null when a repeated submit is answered.")
    replay_note: str | None = None


class TotalsOut(BaseModel):
    currency: str
    gross: int
    platform_fee: int
    net: int
    sales: int
    refunded: int


class RevenueOut(BaseModel):
    totals: list[TotalsOut]
    this_month: list[TotalsOut]
    active_subscribers: int
