"""The only place slotwise reads "now".

``SystemClock`` is the wall clock. ``SimulatedClock`` keeps its time in the database so every
process agrees on it; it moves only forwards, through the operator clock endpoint, which runs
whatever came due on the way (see ``services.renewals.advance_clock``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session

from slotwise.models import ClockState


class Clock(Protocol):
    simulated: bool

    def now(self, db: Session) -> datetime: ...


def wall_now() -> datetime:
    """The real time, whatever the billing clock says: when queued work (a job) becomes runnable."""
    return datetime.now(UTC)


class SystemClock:
    simulated = False

    def now(self, db: Session) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    simulated = True

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start

    def now(self, db: Session) -> datetime:
        state = db.get(ClockState, 1)
        if state is None:
            state = ClockState(id=1, now=self.start or datetime.now(UTC))
            db.add(state)
            db.flush()
        return state.now

    def set(self, db: Session, to: datetime) -> datetime:
        """Move to ``to``; never backwards (an earlier ``to`` leaves the clock where it is)."""
        current = self.now(db)
        state = db.get(ClockState, 1, with_for_update=True)
        assert state is not None
        if to > current:
            state.now = to
        return state.now

