"""Request and response bodies of the billing portal's routes (SPEC §12): billing details, cancel at
the period end and resume."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from slotwise.api.schemas import Body, PeriodOut
from slotwise.services.billing_details import BillingDetails
from slotwise.services.subscriptions import CancelChange, is_canceling

# The service checks each field and names it in ``invalid_request``; these bounds only keep an absurd
# body from being read at all.
LOOSE = 2000


class BillingDetailsIn(Body):
    email: str = Field(max_length=LOOSE, description="Where invoices are sent; required, up to 254 characters.")
    company: str = Field("", max_length=LOOSE, description="Up to 200 characters; may be empty.")
    address: str = Field("", max_length=LOOSE, description="Up to 6 lines and 500 characters; may be empty.")


class BillingDetailsOut(BaseModel):
    email: str | None = Field(description="None until the details are first saved.")
    company: str
    address: str = Field(description="Lines joined by a newline.")


def billing_details(details: BillingDetails) -> BillingDetailsOut:
    return BillingDetailsOut(email=details.email, company=details.company, address=details.address)


class CanceledSubscriptionOut(BaseModel):
    id: str
    plan: str
    status: Literal["active", "past_due", "unpaid", "canceled"]
    current_period: PeriodOut
    cancel_at_period_end: bool
    cancels_at: datetime | None = Field(description="When it ends and the organization moves to Free.")


class CancelOut(BaseModel):
    message: str
    kind: Literal["cancel_scheduled", "already_scheduled", "resumed"]
    subscription: CanceledSubscriptionOut


def cancel_change(change: CancelChange) -> CancelOut:
    sub = change.subscription
    canceling = is_canceling(sub)
    return CancelOut(message=change.message, kind=change.kind,
                     subscription=CanceledSubscriptionOut(
                         id=sub.id, plan=sub.plan_code, status=sub.status,
                         current_period=PeriodOut(start=sub.period_start, end=sub.period_end),
                         cancel_at_period_end=canceling, cancels_at=sub.period_end if canceling else None))
