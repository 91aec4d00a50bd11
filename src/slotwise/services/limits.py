"""Rate limits kept in the database, so that every server process enforces the same count."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.errors import RateLimited
from slotwise.models import QuantityChange, new_id

WINDOW = timedelta(hours=1)


def count_quantity_change(db: Session, *, org_id: str, per_hour: int, at: datetime) -> None:
    """Record one add or removal of add-on slots, or raise ``rate_limited`` if the organization has
    made ``per_hour`` of them in the hour before ``at``.

    The caller holds the organization lock, so concurrent requests count one after another, and the
    record commits (or rolls back) with the change itself: a declined card or a refusal costs
    nothing. A sliding hour, not a fixed window, so no burst of twice the cap around a boundary.
    """
    repo.delete_quantity_changes_before(db, org_id, at - WINDOW)
    recent = repo.quantity_change_times_since(db, org_id, at - WINDOW)
    if len(recent) >= per_hour:
        frees_at = recent[len(recent) - per_hour] + WINDOW
        wait = max(1, math.ceil((frees_at - at).total_seconds()))
        raise RateLimited(
            f"You have changed add-on slots {len(recent)} times in the last hour; the limit is {per_hour}. "
            f"Try again in {_minutes(wait)}.",
            retry_after=wait,
            limit=per_hour,
        )
    db.add(QuantityChange(id=new_id("qc"), org_id=org_id, at=at))


def _minutes(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
