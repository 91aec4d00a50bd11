"""Capacity, usage and add-on quotes over a snapshot of one organization. Pure: no I/O, no clock.

The invariant every function here keeps, per resource (agents, members)::

    usage ≤ next plan's included + renewal slots ≤ plan's included + active slots

The API's preview and the commit both call :func:`quote_add` / :func:`quote_remove`, so the
numbers shown before a change are exactly the numbers the change uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from slotwise.catalog import (
    MAX_SLOTS_PER_ADDON,
    MAX_SLOTS_PER_CHANGE,
    MIN_SLOTS_PER_CHANGE,
    RESOURCES,
    Addon,
    Catalog,
    Plan,
    Resource,
)
from slotwise.errors import (
    AddonUnavailable,
    BelowUsage,
    Conflict,
    InvalidRequest,
    LimitReached,
    PaymentRequired,
    SlotwiseError,
    SubscriptionRequired,
)
from slotwise.periods import Period
from slotwise.proration import prorate

NOUNS = {"agents": ("agent", "agents"), "members": ("member", "members")}


def count_noun(n: int, resource: Resource) -> str:
    one, many = NOUNS[resource]
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True, slots=True)
class Slots:
    active: int = 0
    renewal: int = 0
    unit_price: int | None = None  # locked for the current period; None: not bought yet


@dataclass(frozen=True, slots=True)
class OrgSnapshot:
    catalog: Catalog
    plan: Plan
    next_plan: Plan  # the plan after the next renewal (a scheduled downgrade, or the same)
    usage: dict[Resource, int]
    slots: dict[str, Slots] = field(default_factory=dict)
    period: Period | None = None  # None: no active subscription
    unpaid: bool = False  # dunning ended: usage may not grow until a new card restarts billing

    def slots_of(self, addon: Addon) -> Slots:
        return self.slots.get(addon.code, Slots())


@dataclass(frozen=True, slots=True)
class ResourceCapacity:
    resource: Resource
    addon: str
    included: int
    active_slots: int
    renewal_slots: int
    used: int

    @property
    def total(self) -> int:
        return self.included + self.active_slots


def resource_capacity(snap: OrgSnapshot, resource: Resource) -> ResourceCapacity:
    addon = snap.catalog.addon_for(resource)
    slots = snap.slots_of(addon)
    return ResourceCapacity(
        resource=resource,
        addon=addon.code,
        included=snap.plan.included(resource),
        active_slots=slots.active,
        renewal_slots=slots.renewal,
        used=snap.usage[resource],
    )


def renewal_capacity(snap: OrgSnapshot, resource: Resource, *, renewal_slots: int | None = None) -> int:
    """Capacity the next period will grant: the next plan's included plus kept slots it offers."""
    addon = snap.catalog.addon_for(resource)
    kept = snap.slots_of(addon).renewal if renewal_slots is None else renewal_slots
    offered = snap.period is not None and addon.offered_on(snap.next_plan)
    return snap.next_plan.included(resource) + (kept if offered else 0)


def monthly_total(snap: OrgSnapshot, *, extra: dict[str, int] | None = None) -> int:
    """What the next renewal bills at today's catalog prices: next plan + Σ renewal slots × price."""
    if snap.period is None:
        return 0
    total = snap.next_plan.price or 0
    for addon in snap.catalog.addons.values():
        quantity = snap.slots_of(addon).renewal + (extra or {}).get(addon.code, 0)
        total += quantity * addon.price_per_slot
    return total


@dataclass(frozen=True, slots=True)
class GrowthDecision:
    """Room for ``count`` more of a resource, and how much of a scheduled removal that undoes."""

    addon: str
    restore_slots: int


def reserve_growth(snap: OrgSnapshot, resource: Resource, count: int = 1) -> GrowthDecision:
    """Allow usage to grow by ``count`` within capacity, or raise ``limit_reached``.

    If the growth fits today's capacity but not the next period's, the scheduled removal shrinks by
    what is needed so renewal never leaves the organization over capacity.
    """
    if snap.unpaid:
        raise PaymentRequired()
    cap = resource_capacity(snap, resource)
    addon = snap.catalog.addon_for(resource)
    wanted = cap.used + count
    if wanted > cap.total:
        raise LimitReached(
            f"You're using {count_noun(cap.used, resource)} of {cap.total}. "
            f"Add {addon.name} or upgrade your plan.",
            addon=addon.code,
            resource=resource,
            limit=cap.total,
            used=cap.used,
        )
    shortfall = wanted - renewal_capacity(snap, resource)
    if shortfall <= 0:
        return GrowthDecision(addon.code, 0)
    offered_next = addon.offered_on(snap.next_plan)
    restorable = cap.active_slots - cap.renewal_slots if offered_next else 0
    if shortfall > restorable:
        remedy = f"add {addon.name} first" if offered_next else "cancel the scheduled change on Plans first"
        raise LimitReached(
            f"Your plan changes to {snap.next_plan.name} at the next billing date, which allows "
            f"{renewal_capacity(snap, resource)} {NOUNS[resource][1]}. Keep your current plan or {remedy}.",
            addon=addon.code,
            resource=resource,
            limit=renewal_capacity(snap, resource),
            used=cap.used,
        )
    return GrowthDecision(addon.code, shortfall)


Action = Literal["add", "remove"]


@dataclass(frozen=True, slots=True)
class AddonQuote:
    addon: Addon
    action: Action
    quantity: int
    price_per_slot: int
    charge_now: int
    days_left: int | None
    days_in_period: int | None
    current_slots: int
    new_slots: int
    current_capacity: int
    new_capacity: int
    current_monthly_total: int
    new_monthly_total: int
    effective_at: datetime | None
    refusal: SlotwiseError | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _availability(snap: OrgSnapshot, addon: Addon) -> SlotwiseError | None:
    if snap.period is None:
        return SubscriptionRequired()
    if snap.unpaid:
        return PaymentRequired()
    if not addon.offered_on(snap.plan):
        return AddonUnavailable(addon.unavailable_reason(snap.plan), addon=addon.code)
    if not addon.offered_on(snap.next_plan):
        return AddonUnavailable(
            f"{addon.name} are not offered on {snap.next_plan.name}, which starts at your next "
            "billing date.",
            addon=addon.code,
        )
    return None


def _quantity_error(quantity: int) -> SlotwiseError | None:
    if not MIN_SLOTS_PER_CHANGE <= quantity <= MAX_SLOTS_PER_CHANGE:
        return InvalidRequest(
            f"Quantity must be between {MIN_SLOTS_PER_CHANGE} and {MAX_SLOTS_PER_CHANGE}.",
            field="quantity",
        )
    return None


def quote_add(snap: OrgSnapshot, addon: Addon, quantity: int, at: datetime) -> AddonQuote:
    """Price and effect of adding ``quantity`` slots now, pro-rated over the days left."""
    slots = snap.slots_of(addon)
    price = slots.unit_price if slots.unit_price is not None else addon.price_per_slot
    included = snap.plan.included(addon.resource)
    refusal = _quantity_error(quantity) or _availability(snap, addon)
    if refusal is None and slots.active + quantity > MAX_SLOTS_PER_ADDON:
        refusal = InvalidRequest(
            f"An add-on holds at most {MAX_SLOTS_PER_ADDON} slots; you have {slots.active}.",
            field="quantity",
        )
    charge, days_left, days = 0, None, None
    if refusal is None and snap.period is not None and not snap.period.contains(at):
        # The period ended after this request read it (a renewal ran meanwhile): quote nothing stale.
        refusal = Conflict("Your billing period has just renewed. Reload and try again.")
    if snap.period is not None and snap.period.contains(at) and _quantity_error(quantity) is None:
        proration = prorate(quantity=quantity, unit_price=price, period=snap.period, at=at)
        charge, days_left, days = proration.amount, proration.days_left, proration.days_in_period
    return AddonQuote(
        addon=addon,
        action="add",
        quantity=quantity,
        price_per_slot=price,
        charge_now=charge,
        days_left=days_left,
        days_in_period=days,
        current_slots=slots.active,
        new_slots=slots.active + quantity,
        current_capacity=included + slots.active,
        new_capacity=included + slots.active + quantity,
        current_monthly_total=monthly_total(snap),
        new_monthly_total=monthly_total(snap, extra={addon.code: quantity}),
        effective_at=at,
        refusal=refusal,
    )


def quote_remove(
    snap: OrgSnapshot, addon: Addon, quantity: int | None, at: datetime
) -> AddonQuote:
    """Effect of removing slots at the next billing date (``quantity=None``: all of them).

    No money moves. Refused with ``below_usage`` when the next period's capacity would fall below
    what is in use, saying how many to archive or delete first (``must_free``).
    """
    slots = snap.slots_of(addon)
    remove = slots.renewal if quantity is None else quantity
    refusal = _availability_for_removal(snap, slots, remove, quantity is None)
    kept_after = max(slots.renewal - remove, 0)
    current_capacity = renewal_capacity(snap, addon.resource)
    new_capacity = renewal_capacity(snap, addon.resource, renewal_slots=kept_after)
    used = snap.usage[addon.resource]
    if refusal is None and used > new_capacity:
        must_free = used - new_capacity
        one, many = NOUNS[addon.resource]
        refusal = BelowUsage(
            f"You're using {count_noun(used, addon.resource)}, but the reduced limit would allow "
            f"{new_capacity}. Archive or delete {count_noun(must_free, addon.resource)} first, "
            "then remove the slots."
            if addon.resource == "agents"
            else f"You have {count_noun(used, addon.resource)} (pending invitations included), but "
            f"the reduced limit would allow {new_capacity}. Remove {must_free} "
            f"{one if must_free == 1 else many} or revoke invitations first, then remove the slots.",
            must_free=must_free,
            resource=addon.resource,
            addon=addon.code,
        )
    return AddonQuote(
        addon=addon,
        action="remove",
        quantity=remove,
        price_per_slot=addon.price_per_slot,
        charge_now=0,
        days_left=None,
        days_in_period=None,
        current_slots=slots.renewal,
        new_slots=kept_after,
        current_capacity=current_capacity,
        new_capacity=new_capacity,
        current_monthly_total=monthly_total(snap),
        new_monthly_total=monthly_total(snap, extra={addon.code: -min(remove, slots.renewal)}),
        effective_at=snap.period.end if snap.period else None,
        refusal=refusal,
    )


def _availability_for_removal(
    snap: OrgSnapshot, slots: Slots, remove: int, remove_all: bool
) -> SlotwiseError | None:
    if snap.period is None:
        return SubscriptionRequired()
    if snap.unpaid:
        return PaymentRequired()
    if slots.renewal == 0:
        return InvalidRequest("There are no slots left to remove.", field="quantity")
    if not remove_all and (error := _quantity_error(remove)):
        return error
    if remove > slots.renewal:
        return InvalidRequest(
            f"You can remove at most {slots.renewal} slots.", field="quantity"
        )
    return None


def plan_change_refusal(snap: OrgSnapshot, new_plan: Plan) -> SlotwiseError | None:
    """Why a downgrade to ``new_plan`` can't be scheduled, or None if it can."""
    for addon in snap.catalog.addons.values():
        if snap.slots_of(addon).renewal > 0 and (new_plan.is_free or not addon.offered_on(new_plan)):
            return AddonUnavailable(
                f"{new_plan.name} does not offer {addon.name}. Remove the add-on first, then "
                "change your plan.",
                addon=addon.code,
            )
    for resource in RESOURCES:
        addon = snap.catalog.addon_for(resource)
        kept = snap.slots_of(addon).renewal if addon.offered_on(new_plan) else 0
        limit = new_plan.included(resource) + kept
        used = snap.usage[resource]
        if used > limit:
            return BelowUsage(
                f"{new_plan.name} allows {limit} {NOUNS[resource][1]} and you have {used}. "
                f"Archive or remove {count_noun(used - limit, resource)} first.",
                must_free=used - limit,
                resource=resource,
            )
    return None
