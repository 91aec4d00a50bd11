"""Renewals, payment retries, dunning's end, credit refills and the billing sweep.

* ``cycle``: one organization, every event due at its own instant in time order (``catch_up``, run
  by the first request about it and by the sweep for anything uncommon), the retry of an open
  invoice with a new card, the restart of an ``unpaid`` subscription.
* ``batch``: the sweep's set-based renewal round over a batch of organizations, by ``cycle``'s rules.
* ``run``: the sweep itself (batches claimed with ``SKIP LOCKED``), the billing run and the
  simulated clock's moves.
"""

from __future__ import annotations

from slotwise.services.renewals.batch import LATEST_INSTANT
from slotwise.services.renewals.cycle import (
    RENEWING,
    RETRY_AFTER_DAYS,
    SlotsRow,
    SweepReport,
    catch_up,
    paid_late,
    renewal_lines,
    restart_unpaid,
    retry_invoice,
    settle_addons_for_period,
)
from slotwise.services.renewals.run import (
    BATCH_SIZE,
    FIRST_BATCH_SIZE,
    IDEMPOTENCY_KEY_TTL,
    MAX_CLOCK_STEP,
    RENEWALS_PER_TRANSACTION,
    SweepProgress,
    advance_clock,
    clock_target,
    run_billing,
    sweep,
)

__all__ = [
    "BATCH_SIZE", "FIRST_BATCH_SIZE", "IDEMPOTENCY_KEY_TTL", "LATEST_INSTANT", "MAX_CLOCK_STEP",
    "RENEWALS_PER_TRANSACTION", "RENEWING", "RETRY_AFTER_DAYS", "SlotsRow", "SweepProgress", "SweepReport",
    "advance_clock", "catch_up", "clock_target", "paid_late", "renewal_lines", "restart_unpaid", "retry_invoice",
    "run_billing", "settle_addons_for_period", "sweep",
]
