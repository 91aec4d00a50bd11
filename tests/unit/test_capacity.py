"""The add-on rules of SPEC §4 over pure snapshots, and the invariant they keep.

Invariant, per resource: usage ≤ next plan + renewal slots ≤ plan + active slots.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotwise.capacity import (
    OrgSnapshot,
    Slots,
    plan_change_refusal,
    quote_add,
    quote_remove,
    renewal_capacity,
    reserve_growth,
    resource_capacity,
)
from slotwise.catalog import load_catalog
from slotwise.errors import AddonUnavailable, BelowUsage, InvalidRequest, LimitReached, SubscriptionRequired
from slotwise.money import round_half_up
from slotwise.periods import period_at_index

CATALOG = load_catalog()
PERIOD = period_at_index(datetime(2026, 11, 15, 9, tzinfo=UTC), 0)
NOV_26 = datetime(2026, 11, 26, 12, tzinfo=UTC)
AGENTS = CATALOG.addon("agent_slots")
MEMBERS = CATALOG.addon("member_slots")


def snap(plan: str = "pro", *, agents: int = 0, members: int = 1, agent_slots: tuple[int, int] = (0, 0),
         member_slots: tuple[int, int] = (0, 0), next_plan: str | None = None, subscribed: bool = True) -> OrgSnapshot:
    slots = {}
    if agent_slots != (0, 0):
        slots["agent_slots"] = Slots(*agent_slots, unit_price=700)
    if member_slots != (0, 0):
        slots["member_slots"] = Slots(*member_slots, unit_price=1500)
    return OrgSnapshot(catalog=CATALOG, plan=CATALOG.plan(plan), next_plan=CATALOG.plan(next_plan or plan),
                       usage={"agents": agents, "members": members}, slots=slots,
                       period=PERIOD if subscribed else None)


class TestQuoteAdd:
    def test_worked_example(self) -> None:
        quote = quote_add(snap(), AGENTS, 2, NOV_26)
        assert quote.allowed
        assert (quote.charge_now, quote.days_left, quote.days_in_period) == (887, 19, 30)
        assert (quote.current_capacity, quote.new_capacity) == (5, 7)
        assert (quote.current_monthly_total, quote.new_monthly_total) == (15000, 15000 + 2 * 700)

    def test_uses_the_price_locked_for_this_period(self) -> None:
        locked = replace(snap(agent_slots=(1, 1)), slots={"agent_slots": Slots(1, 1, unit_price=650)})
        quote = quote_add(locked, AGENTS, 2, NOV_26)
        assert quote.price_per_slot == 650
        assert quote.charge_now == round_half_up(Fraction(2 * 650 * 19, 30))

    @pytest.mark.parametrize(("state", "error"), [
        (snap("free", subscribed=False), SubscriptionRequired),
        (snap("starter"), AddonUnavailable),
        (snap("pro", next_plan="starter"), AddonUnavailable),
    ])
    def test_member_slots_refusals(self, state: OrgSnapshot, error: type[Exception]) -> None:
        assert isinstance(quote_add(state, MEMBERS, 1, NOV_26).refusal, error)

    @pytest.mark.parametrize("quantity", [0, 101, -1])
    def test_quantity_bounds(self, quantity: int) -> None:
        assert isinstance(quote_add(snap(), AGENTS, quantity, NOV_26).refusal, InvalidRequest)

    def test_an_addon_holds_at_most_1000_slots(self) -> None:
        assert quote_add(snap(agent_slots=(900, 900)), AGENTS, 100, NOV_26).allowed
        assert isinstance(quote_add(snap(agent_slots=(901, 901)), AGENTS, 100, NOV_26).refusal, InvalidRequest)


class TestQuoteRemove:
    def test_refused_below_usage_with_the_count_to_free(self) -> None:
        quote = quote_remove(snap(agents=7, agent_slots=(2, 2)), AGENTS, 2, NOV_26)
        assert isinstance(quote.refusal, BelowUsage)
        assert quote.refusal.details["must_free"] == 2
        assert "Archive or delete 2 agents first" in quote.refusal.message

    def test_allowed_within_usage_takes_effect_at_renewal_without_charge(self) -> None:
        quote = quote_remove(snap(agents=6, agent_slots=(2, 2)), AGENTS, 1, NOV_26)
        assert quote.allowed
        assert (quote.charge_now, quote.effective_at) == (0, PERIOD.end)
        assert (quote.current_slots, quote.new_slots, quote.new_capacity) == (2, 1, 6)
        assert quote.new_monthly_total == 15000 + 700

    def test_remove_all(self) -> None:
        quote = quote_remove(snap(agents=5, agent_slots=(3, 3)), AGENTS, None, NOV_26)
        assert (quote.allowed, quote.quantity, quote.new_slots) == (True, 3, 0)

    def test_cannot_remove_more_than_kept(self) -> None:
        assert isinstance(quote_remove(snap(agent_slots=(3, 1)), AGENTS, 2, NOV_26).refusal, InvalidRequest)

    def test_members_count_pending_invitations(self) -> None:
        quote = quote_remove(snap(members=4, member_slots=(2, 2)), MEMBERS, 2, NOV_26)
        assert isinstance(quote.refusal, BelowUsage) and quote.refusal.details["must_free"] == 1


class TestGrowth:
    def test_at_capacity_names_the_addon(self) -> None:
        with pytest.raises(LimitReached) as raised:
            reserve_growth(snap(agents=5), "agents")
        assert raised.value.details["addon"] == "agent_slots"

    def test_growth_into_a_scheduled_removal_shrinks_it(self) -> None:
        # 7 active, 5 kept at renewal, 5 agents in use: the 6th agent keeps one slot.
        decision = reserve_growth(snap(agents=5, agent_slots=(2, 0)), "agents")
        assert decision.restore_slots == 1

    def test_scheduled_downgrade_limits_growth(self) -> None:
        with pytest.raises(LimitReached):
            reserve_growth(snap("pro", agents=2, next_plan="starter"), "agents")


class TestPlanChange:
    def test_downgrade_refused_above_usage(self) -> None:
        refusal = plan_change_refusal(snap(agents=4), CATALOG.plan("starter"))
        assert isinstance(refusal, BelowUsage) and refusal.details["must_free"] == 2

    def test_downgrade_refused_while_an_unoffered_addon_is_kept(self) -> None:
        refusal = plan_change_refusal(snap(member_slots=(1, 1)), CATALOG.plan("starter"))
        assert isinstance(refusal, AddonUnavailable) and refusal.details["addon"] == "member_slots"

    def test_kept_slots_count_toward_the_new_plan(self) -> None:
        assert plan_change_refusal(snap(agents=4, agent_slots=(2, 2)), CATALOG.plan("starter")) is None


def invariant_holds(state: OrgSnapshot) -> bool:
    for resource in ("agents", "members"):
        cap = resource_capacity(state, resource)  # type: ignore[arg-type]
        if not state.usage[resource] <= renewal_capacity(state, resource) <= cap.total:  # type: ignore[index]
            return False
    return True


operations = st.lists(st.tuples(st.sampled_from(["add", "remove", "grow", "shrink", "keep"]),
                                st.integers(1, 5)), max_size=40)


class TestInvariantUnderAnySequence:
    @settings(max_examples=300)
    @given(operations)
    def test_usage_never_exceeds_renewal_or_active_capacity(self, ops: list[tuple[str, int]]) -> None:
        state = snap(agents=3)
        for op, n in ops:
            slots = state.slots_of(AGENTS)
            if op == "add" and quote_add(state, AGENTS, n, NOV_26).allowed:
                slots = Slots(slots.active + n, slots.renewal + n, 700)
            elif op == "remove" and quote_remove(state, AGENTS, n, NOV_26).allowed:
                slots = Slots(slots.active, slots.renewal - n, 700)
            elif op == "keep":
                slots = Slots(slots.active, slots.active, 700)
            elif op == "grow":
                try:
                    decision = reserve_growth(state, "agents")
                except LimitReached:
                    continue
                slots = Slots(slots.active, slots.renewal + decision.restore_slots, 700)
                state = replace(state, usage={**state.usage, "agents": state.usage["agents"] + 1})
            elif op == "shrink":
                state = replace(state, usage={**state.usage, "agents": max(state.usage["agents"] - n, 0)})
            state = replace(state, slots={"agent_slots": slots})
            assert invariant_holds(state), (op, n, state.usage, slots)
