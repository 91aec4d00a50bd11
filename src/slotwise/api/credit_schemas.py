"""Request and response bodies of the credit routes (SPEC §11): the spend, Top Up Now, auto-recharge,
the overview and usage. Credits are integers; money is minor units beside its ``currency``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from slotwise.api.schemas import Body, InvoiceOut

# Credits: the spend (SPEC §11)

Reference = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class SpendIn(Body):
    activity: Literal["message", "document", "voice", "tool"]
    reference: Reference = Field(description="The platform's id of the answer, document, recording or tool run: "
                                             "unique per organization for ever.")
    model: Literal["standard", "premium"] = Field("standard", description="Messages only: premium costs more.")
    units: int = Field(1, strict=True, ge=1, le=1000)
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=32,
                                               pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    playground: bool = Field(False, strict=True, description="Costs nothing; still recorded as usage.")


class CreditBalance(BaseModel):
    plan: int
    topup: int
    total: int


class SpendOut(BaseModel):
    id: str
    reference: str
    cost: int
    from_plan: int
    from_topup: int
    balance: CreditBalance
    replayed: bool = Field(description="True: this reference was spent before; the first answer, nothing debited.")


# Credits: usage over a date range (SPEC §11)

class UsageBucketOut(BaseModel):
    start: date = Field(description="The bucket's first day (UTC): the day, its week's Monday or its month's 1st. "
                                    "Only days within from…to count.")
    credits: int
    messages: int


class UsedOfLimit(BaseModel):
    used: int
    limit: int


class UsageOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    start: date = Field(serialization_alias="from", description="The first day of the range, included.")
    end: date = Field(serialization_alias="to", description="The last day of the range, included.")
    interval: Literal["day", "week", "month"]
    agent_id: str | None = Field(description="The one agent counted, or null for all of them.")
    credits_used: int
    messages: int = Field(description="Units of message spends (playground ones included).")
    series: list[UsageBucketOut] = Field(description="Every bucket of the range in order, zeros included.")
    agents: UsedOfLimit = Field(description="Chatbots in use of the limit (plan + active slots).")
    members: UsedOfLimit = Field(description="Team members and pending invitations of the limit.")


# Credits: Top Up Now, auto-recharge and the overview (SPEC §11)

class TopUpIn(Body):
    packs: int = Field(strict=True, ge=1, le=100, description="How many packs to buy at once (1–100).")


class AutoRechargeIn(Body):
    enabled: bool = Field(strict=True)
    threshold: int | None = Field(None, strict=True, ge=0, le=1_000_000_000,
                                  description="Recharge when the total balance falls below this many credits "
                                              "(default 100); omitted: unchanged.")
    max_per_month: int | None = Field(None, strict=True, ge=1, le=100,
                                      description="Recharges per billing period (1–100); omitted: unchanged.")


class CreditPackOut(BaseModel):
    credits: int
    price: int
    currency: str


class AutoRechargeOut(BaseModel):
    enabled: bool
    threshold: int
    max_per_month: int
    used_this_month: int = Field(description="Recharges paid this billing period.")
    last_recharged_at: datetime | None
    disabled_reason: str | None = Field(description="Why auto-recharge turned itself off, until it is enabled again.")
    pack: CreditPackOut


class AutoRechargeUpdated(BaseModel):
    message: str
    auto_recharge: AutoRechargeOut


class TopUpOut(BaseModel):
    message: str
    invoice: InvoiceOut
    balance: CreditBalance


class PlanCreditsOut(BaseModel):
    allowance: int
    remaining: int
    refills_at: datetime | None = Field(description="When plan credits are next refilled (unused ones expire then); "
                                                    "null while a period awaits payment.")


class TopupCreditsOut(BaseModel):
    remaining: int


class CreditsOut(BaseModel):
    plan: PlanCreditsOut
    topup: TopupCreditsOut
    total: int
    used_this_period: int
    costs: dict[str, int] = Field(description="Credits per unit of each activity (message_premium: a premium message).")
    auto_recharge: AutoRechargeOut
