"""Credit arithmetic, pure (SPEC §11): refills, expiry, upgrades and spends, plan credits first.

Whatever sequence of grants and spends an account goes through, applied as the services apply them
(``credits.split`` for a spend, ``period_start_moves`` at each period's start, ``upgrade_move``), each
pool's balance is the sum of its ledger movements, never below zero, and a spend takes plan credits
before top-up credits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotwise.credits import (
    Movement,
    Pools,
    free_refills,
    next_anchor,
    period_start_moves,
    spend_move,
    upgrade_move,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@dataclass
class Account:
    """An account as the services keep it: balances changed only together with a ledger movement."""

    pools: Pools = field(default_factory=lambda: Pools(0, 0))
    ledger: list[Movement] = field(default_factory=list)
    allowance: int = 0  # of the period in force

    def record(self, moves: list[Movement]) -> None:
        for move in moves:
            self.pools = self.pools.apply(move)
            self.ledger.append(move)

    def sums(self) -> Pools:
        return Pools(sum(m.plan_delta for m in self.ledger), sum(m.topup_delta for m in self.ledger))


allowances = st.integers(min_value=0, max_value=50_000)
events = st.one_of(
    st.tuples(st.just("period"), st.one_of(st.none(), allowances)),  # renewal: paid (allowance) or waiting
    st.tuples(st.just("topup"), st.integers(min_value=1, max_value=100).map(lambda packs: packs * 1000)),
    st.tuples(st.just("spend"), st.integers(min_value=0, max_value=60_000)),
    st.tuples(st.just("upgrade"), allowances),
)


class TestLedgerInvariant:
    @given(st.lists(events, max_size=60))
    def test_balances_are_ledger_sums_never_negative_plan_first(self, sequence: list[tuple[str, int | None]]) -> None:
        account = Account()
        for kind, amount in sequence:
            before = account.pools
            if kind == "period":
                account.record(period_start_moves(before.plan, amount))
                assert account.pools.plan == (amount or 0)  # no rollover: exactly the new allowance
                assert account.pools.topup == before.topup  # top-up credits are never touched
                account.allowance = amount or 0
            elif kind == "topup":
                assert amount is not None
                account.record([Movement("topup", topup_delta=amount)])
            elif kind == "upgrade":
                assert amount is not None
                move = upgrade_move(account.allowance, amount)
                if move is not None:
                    account.record([move])
                    account.allowance = amount
                    assert account.pools.plan == before.plan + move.plan_delta
            else:
                assert amount is not None
                move = spend_move(amount, before)
                if move is None:
                    assert amount > before.plan + before.topup  # refused whole: nothing taken
                else:
                    account.record([move])
                    assert -move.plan_delta == min(amount, before.plan)  # plan credits first
                    assert -move.topup_delta == amount - min(amount, before.plan)
            assert account.pools == account.sums()
            assert account.pools.plan >= 0 and account.pools.topup >= 0

    @given(st.integers(min_value=0, max_value=10**6), st.one_of(st.none(), allowances))
    def test_a_period_start_expires_what_is_left_then_refills(self, left: int, allowance: int | None) -> None:
        moves = period_start_moves(left, allowance)
        kinds = [m.kind for m in moves]
        assert kinds == (["expiry"] if left else []) + (["refill"] if allowance else [])
        assert all(m.topup_delta == 0 for m in moves)
        assert sum(m.plan_delta for m in moves) == (allowance or 0) - left


class TestUpgrade:
    def test_the_difference_at_once(self) -> None:
        assert upgrade_move(15_000, 50_000) == Movement("refill", 35_000)

    def test_never_takes_credits_away(self) -> None:
        assert upgrade_move(50_000, 15_000) is None
        assert upgrade_move(4000, 4000) is None


class TestPools:
    def test_a_movement_below_zero_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Pools(10, 0).apply(Movement("expiry", -11))
        with pytest.raises(ValueError):
            period_start_moves(-1, 100)


class TestFreeMonths:
    def test_created_jan_31_refills_feb_28_then_mar_31(self) -> None:
        created = utc(2027, 1, 31, 10)
        assert next_anchor(created, created) == utc(2027, 2, 28, 10)
        refills = free_refills(created, utc(2027, 2, 28, 10), utc(2027, 4, 30, 10), plan_balance=37, allowance=100)
        assert [r.at for r in refills] == [utc(2027, 2, 28, 10), utc(2027, 3, 31, 10), utc(2027, 4, 30, 10)]
        assert [r.refills_at for r in refills] == [utc(2027, 3, 31, 10), utc(2027, 4, 30, 10), utc(2027, 5, 31, 10)]
        assert refills[0].moves == (Movement("expiry", -37), Movement("refill", 100))
        assert refills[1].moves == (Movement("expiry", -100), Movement("refill", 100))

    def test_nothing_due_before_the_anchor(self) -> None:
        created = utc(2027, 1, 31, 10)
        assert free_refills(created, utc(2027, 2, 28, 10), utc(2027, 2, 28, 9, 59), plan_balance=0,
                            allowance=100) == []

    def test_a_free_month_that_starts_mid_anchor_runs_to_the_next_anchor(self) -> None:
        created = utc(2027, 1, 15)
        ended = utc(2027, 6, 2, 8)  # a subscription ended here: free from then
        assert next_anchor(created, ended) == utc(2027, 6, 15)
        assert next_anchor(created, created - timedelta(days=1)) == created

    @given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2080, 1, 1), timezones=st.just(UTC)),
           st.integers(min_value=0, max_value=40))
    def test_one_refill_per_anchored_month(self, created: datetime, months: int) -> None:
        first = next_anchor(created, created)
        at = first + timedelta(days=31 * months)
        refills = free_refills(created, first, at, plan_balance=0, allowance=100)
        assert refills and refills[-1].at <= at < refills[-1].refills_at  # every month due, none ahead
        assert all(a.refills_at == b.at for a, b in pairwise(refills))
        assert all(r.at.day == min(created.day, r.at.day) and r.at.time() == created.time() for r in refills)
