"""Buying and removing add-on slots (SPEC §4), Owner Only.

Invariant kept by every function here: ``usage ≤ plan + renewal slots ≤ plan + active slots``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.capacity import AddonQuote, OrgSnapshot, Slots, quote_add, quote_remove
from slotwise.catalog import Addon
from slotwise.errors import AddonUnavailable, InvalidRequest, NotFound, PaymentFailed, SubscriptionRequired
from slotwise.gateway import ChargeResult
from slotwise.hotpath import snapshot_rows
from slotwise.models import Organization
from slotwise.services import trail
from slotwise.services.audit import by_user
from slotwise.services.context import Actor, Env, require_owner
from slotwise.services.invoices import InvoiceRecord, LineDraft, action_required, charge_and_record, line_description
from slotwise.services.limits import count_quantity_change, quantity_change_refusal
from slotwise.services.snapshot import load_snapshot, locked_org, read_snapshot, snapshot_of

ADDED = "Slots added successfully."
REMOVED = "Slots removed successfully."
KEPT = "Your slots will be kept."


@dataclass(frozen=True, slots=True)
class AddonView:
    addon: Addon
    available: bool
    reason: str | None
    active_slots: int
    renewal_slots: int
    unit_price: int
    effective_at: datetime | None  # when a scheduled removal takes effect

    @property
    def monthly_cost(self) -> int:
        return self.renewal_slots * self.addon.price_per_slot


def _addon(env: Env, code: str) -> Addon:
    addon = env.catalog.addons.get(code)
    if addon is None:
        raise NotFound(f"No add-on {code!r}.")
    return addon


def _org(db: Session, actor: Actor) -> Organization:
    org = repo.organization(db, actor.org_id)
    if org is None:
        raise NotFound("No such organization.")
    return org


def list_addons(db: Session, *, env: Env, actor: Actor) -> Sequence[AddonView]:
    snap = load_snapshot(db, env.catalog, _org(db, actor))
    return [_view(snap, addon) for addon in env.catalog.addons.values()]


def _view(snap: OrgSnapshot, addon: Addon) -> AddonView:
    slots = snap.slots_of(addon)
    reason = None if snap.period is not None else "Add-ons need an active subscription."
    reason = reason or addon.unavailable_reason(snap.plan)
    pending = snap.period is not None and slots.renewal < slots.active
    return AddonView(
        addon=addon,
        available=reason is None,
        reason=reason,
        active_slots=slots.active,
        renewal_slots=slots.renewal,
        unit_price=slots.unit_price if slots.unit_price is not None else addon.price_per_slot,
        effective_at=snap.period.end if pending and snap.period else None,
    )


def preview(
    db: Session, *, env: Env, actor: Actor, addon_code: str, action: str, quantity: int | None, at: datetime
) -> AddonQuote:
    """Exactly the numbers ``add_slots`` / ``remove_slots`` would use now; changes nothing."""
    require_owner(actor)
    addon = _addon(env, addon_code)
    snap = load_snapshot(db, env.catalog, _org(db, actor))
    if action == "add":
        if quantity is None:
            raise InvalidRequest("Give a quantity to add.", field="quantity")
        quote = quote_add(snap, addon, quantity, at)
    else:
        quote = quote_remove(snap, addon, quantity, at)
    if quote.allowed:  # the hourly cap refuses the commit too, so the preview must say so
        limited = quantity_change_refusal(db, org_id=actor.org_id, per_hour=env.quantity_changes_per_hour, at=at)
        quote = replace(quote, refusal=limited) if limited is not None else quote
    return quote


@dataclass(frozen=True, slots=True)
class SlotChange:
    quote: AddonQuote
    view: AddonView
    invoice: InvoiceRecord | None
    message: str


def _after(snap: OrgSnapshot, addon: Addon, active: int, renewal: int, unit_price: int) -> OrgSnapshot:
    """The snapshot with an add-on's slots as a change just wrote them: the answer is built from what
    was written, not read again."""
    return replace(snap, slots={**snap.slots, addon.code: Slots(active, renewal, unit_price)})


def add_slots(db: Session, *, env: Env, actor: Actor, addon_code: str, quantity: int, at: datetime) -> SlotChange:
    """Charge the pro-rated price for ``quantity`` slots, then grant them (active and renewal).

    The invoice, the charge and the new slots commit together; a declined card raises
    ``payment_failed`` and the caller's rollback leaves nothing behind. A payment the bank asks the
    Owner to verify leaves the invoice open with what it buys (``slots_purchase``) and raises
    ``payment_action_required``, which keeps it; the slots come with the verification. Eight statements: the lock
    (taking the invoice number), the snapshot, the hourly count and its record, the invoice, its
    line, its charge, the slots.
    """
    require_owner(actor)
    addon = _addon(env, addon_code)
    taken = repo.take_invoice_number(db, actor.org_id)
    rows = snapshot_rows(db, actor.org_id)
    if taken is None or rows is None:
        raise NotFound("No such organization.")
    snap = snapshot_of(rows, env.catalog)
    quote = quote_add(snap, addon, quantity, at)
    if quote.refusal is not None:
        raise quote.refusal
    count_quantity_change(db, org_id=actor.org_id, per_hour=env.quantity_changes_per_hour, at=at)
    assert rows.subscription is not None and snap.period is not None and quote.days_left is not None
    line = LineDraft(
        "addon", addon.code,
        line_description(addon.name, quantity, snap.period, quote.days_left, at),
        quantity, quote.price_per_slot, quote.charge_now, replace(snap.period, start=at), quote.days_left,
        snap.period.days,
    )
    invoice = charge_and_record(db, env.gateway, org_id=actor.org_id, card_token=taken.card_token,
                                number=taken.number, kind="addon", subscription_id=rows.subscription.id,
                                period=snap.period, currency=addon.currency, lines=[line], at=at,
                                purchase=slots_purchase(addon.code, quantity, quote.price_per_slot))
    if isinstance(invoice, ChargeResult):
        raise PaymentFailed(invoice.failure_message, decline_code=invoice.failure_code)
    if invoice.status == "open":  # the bank asks the Owner to verify: nothing is granted yet
        raise action_required(db, org_id=actor.org_id, invoice=invoice, at=at)
    slots = snap.slots_of(addon)
    grant_slots(db, org_id=actor.org_id, addon=addon, quantity=quantity, unit_price=quote.price_per_slot,
                held=slots.unit_price is not None, at=at)
    after = _after(snap, addon, slots.active + quantity, slots.renewal + quantity, quote.price_per_slot)
    trail.invoice_event(db, "invoice.paid", org_id=actor.org_id, invoice=invoice, at=at)
    trail.addon_changed(db, org_id=actor.org_id, by=by_user(db, actor), kind="addon.added", addon=addon.code,
                        before=slots, after=after.slots_of(addon), at=at, effective_at=at, invoice=invoice)
    return SlotChange(quote, _view(after, addon), invoice, ADDED)


def slots_purchase(addon_code: str, quantity: int, unit_price: int) -> dict[str, object]:
    """What an add-slots invoice waiting for verification grants once paid (``verification``)."""
    return {"kind": "slots", "addon": addon_code, "quantity": quantity, "unit_price": unit_price}


def grant_slots(db: Session, *, org_id: str, addon: Addon, quantity: int, unit_price: int, held: bool,
                at: datetime) -> None:
    """Add ``quantity`` active and renewal slots (``held``: the organization has a row for the add-on
    already); the first slots of an add-on lock ``unit_price`` until the renewal."""
    if not held:
        repo.insert_addon_slots(db, org_id=org_id, addon_code=addon.code, slots=quantity,
                                unit_price=unit_price, currency=addon.currency, at=at)
    else:
        repo.change_addon_slots(db, org_id=org_id, addon_code=addon.code, active=quantity, renewal=quantity,
                                at=at)


def remove_slots(
    db: Session, *, env: Env, actor: Actor, addon_code: str, quantity: int | None, at: datetime
) -> SlotChange:
    """Schedule a removal for the next billing date (``quantity=None``: the whole add-on).

    No refund; capacity stays until renewal. Refused with ``below_usage`` if the reduced limit would
    be below what is in use. Five statements: the lock, the snapshot, the hourly count and its
    record, the slots.
    """
    require_owner(actor)
    addon = _addon(env, addon_code)
    if not repo.lock_organization(db, actor.org_id):
        raise NotFound("No such organization.")
    snap = read_snapshot(db, env.catalog, actor.org_id)
    quote = quote_remove(snap, addon, quantity, at)
    if quote.refusal is not None:
        raise quote.refusal
    count_quantity_change(db, org_id=actor.org_id, per_hour=env.quantity_changes_per_hour, at=at)
    repo.change_addon_slots(db, org_id=actor.org_id, addon_code=addon.code, active=0, renewal=-quote.quantity, at=at)
    slots = snap.slots_of(addon)
    after = _after(snap, addon, slots.active, slots.renewal - quote.quantity,
                   slots.unit_price if slots.unit_price is not None else addon.price_per_slot)
    if quote.quantity:
        assert snap.period is not None  # a removal needs a subscription
        trail.addon_changed(db, org_id=actor.org_id, by=by_user(db, actor), kind="addon.removal_scheduled",
                            addon=addon.code, before=slots, after=after.slots_of(addon), at=at,
                            effective_at=snap.period.end)
    return SlotChange(quote, _view(after, addon), None, REMOVED)


def keep_slots(db: Session, *, env: Env, actor: Actor, addon_code: str, at: datetime) -> AddonView:
    """Undo a scheduled removal before renewal, at no charge."""
    require_owner(actor)
    addon = _addon(env, addon_code)
    org = locked_org(db, actor.org_id)
    snap = load_snapshot(db, env.catalog, org)
    if snap.period is None:
        raise SubscriptionRequired()
    if not addon.offered_on(snap.next_plan):
        raise AddonUnavailable(
            f"{addon.name} are not offered on {snap.next_plan.name}, which starts at your next billing date.",
            addon=addon.code,
        )
    row = repo.addons_of_org(db, org.id).get(addon.code)
    if row is None or row.renewal_slots == row.active_slots:
        raise InvalidRequest("There is no scheduled removal to undo.")
    before = Slots(row.active_slots, row.renewal_slots)
    row.renewal_slots = row.active_slots
    row.updated_at = at
    db.flush()
    trail.addon_changed(db, org_id=org.id, by=by_user(db, actor), kind="addon.removal_cancelled", addon=addon.code,
                        before=before, after=Slots(row.active_slots, row.renewal_slots), at=at,
                        effective_at=snap.period.end)
    return _view(load_snapshot(db, env.catalog, org), addon)
