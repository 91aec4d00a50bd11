"""The Activity page's words: an audit entry as a sentence (``addon.added`` → "Added 2 chatbot
slots"), who made it, and its before → after as short lines. Pure functions of the entry; a kind
without words of its own reads as the kind itself, so a newer writer's entries still show."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from slotwise.services.audit_log import Entry
from slotwise.web.render import long_date, money, plural

State = Mapping[str, Any]
SLOTS = {"agent_slots": ("chatbot slot", "chatbot slots"), "member_slots": ("team member slot", "team member slots")}
MODES = {"free": "Free", "restricted": "Restricted", "paid": "Pay for Access"}

# The filter's families, in the order of the navigation; a family is a kind prefix ending in a dot.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("addon.", "Add-on slots"), ("plan.", "Plan"), ("subscription.", "Subscription and renewals"),
    ("invoice.", "Invoices"), ("payment_method.", "Card"), ("billing_details.", "Billing details"),
    ("credits.", "Credits"), ("auto_recharge.", "Auto-recharge"), ("member.", "Members"),
    ("invitation.", "Invitations"), ("agent.", "Agents"), ("pass.", "Passes"), ("payment.", "Refunds"),
    ("organization.", "Organization"),
)

# One kind's short name, for the filter's options.
KIND_LABELS: dict[str, str] = {
    "organization.created": "Organization created",
    "plan.started": "Plan started", "plan.upgraded": "Plan upgraded",
    "plan.downgrade_scheduled": "Downgrade scheduled", "plan.downgrade_canceled": "Downgrade canceled",
    "subscription.cancel_scheduled": "Cancellation scheduled", "subscription.resumed": "Subscription resumed",
    "subscription.renewed": "Renewed", "subscription.renewal_failed": "Renewal failed",
    "subscription.ended": "Subscription ended", "subscription.unpaid": "Subscription unpaid",
    "subscription.restarted": "Subscription restarted", "subscription.reactivated": "Subscription reactivated",
    "invoice.paid": "Invoice paid", "invoice.payment_failed": "Invoice payment failed",
    "invoice.voided": "Invoice voided",
    "addon.added": "Slots added", "addon.removal_scheduled": "Removal scheduled",
    "addon.removal_cancelled": "Removal canceled (slots kept)", "addon.removal_reduced": "Removal reduced",
    "addon.removed": "Slots removed",
    "payment_method.updated": "Card updated", "billing_details.updated": "Billing details updated",
    "credits.topped_up": "Credits topped up", "credits.recharged": "Credits auto-recharged",
    "credits.recharge_failed": "Auto-recharge failed",
    "auto_recharge.updated": "Auto-recharge settings", "auto_recharge.disabled": "Auto-recharge turned off",
    "member.added": "Member added", "member.removed": "Member removed",
    "invitation.created": "Invitation sent", "invitation.revoked": "Invitation revoked",
    "invitation.accepted": "Invitation accepted", "invitation.withdrawn": "Invitation withdrawn",
    "agent.created": "Agent created", "agent.archived": "Agent archived", "agent.restored": "Agent restored",
    "agent.deleted": "Agent deleted", "agent.access_changed": "Agent visibility",
    "pass.sold": "Pass sold", "pass.created": "Pass sold", "pass.refunded": "Pass refunded",
    "payment.refunded": "Payment refunded",
}


def who(entry: Entry) -> str:
    """The user's email as it was at the change; the operator is the platform; the system is slotwise
    (or what it acted for, such as a visitor's purchase)."""
    if entry.actor_type == "user":
        return entry.actor_label or "A former member"
    if entry.actor_type == "operator":
        return "Your platform"
    return entry.actor_label or "slotwise"


def _int(state: State | None, key: str) -> int:
    value = (state or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(state: State | None, key: str, default: str = "") -> str:
    value = (state or {}).get(key)
    return str(value) if value not in (None, "") else default


def _slots(entry: Entry, count: int) -> str:
    one, many = SLOTS.get(entry.subject_id or "", ("slot", "slots"))
    return plural(count, one, many)


def _addon(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    active = _int(a, "active_slots") - _int(b, "active_slots")
    renewal = _int(a, "renewal_slots") - _int(b, "renewal_slots")
    return {
        "addon.added": f"Added {_slots(entry, active)}",
        "addon.removal_scheduled": f"Scheduled the removal of {_slots(entry, -renewal)} "
                                           "at the next billing date",
        "addon.removal_cancelled": f"Kept {_slots(entry, renewal)} that were to be removed",
        "addon.removal_reduced": f"Kept {_slots(entry, renewal)} of a scheduled removal, now in use",
        "addon.removed": f"Removed {_slots(entry, -active)}",
    }.get(entry.kind, entry.kind)


def _plan_name(code: str) -> str:
    return code.replace("_", " ").title() if code else "no"


def _plan(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    before_plan, after_plan = _plan_name(_text(b, "plan")), _plan_name(_text(a, "plan"))
    scheduled = _plan_name(_text(a, "scheduled_plan"))
    sentences = {
        "plan.started": f"Started the {after_plan} plan",
        "plan.upgraded": f"Changed the plan from {before_plan} to {after_plan}",
        "plan.downgrade_scheduled": f"Scheduled a change to the {scheduled} plan at the next billing date",
        "plan.downgrade_canceled": f"Canceled the scheduled plan change, staying on {after_plan}",
        "subscription.cancel_scheduled": "Scheduled the subscription to cancel at the end of the period",
        "subscription.resumed": "Resumed the subscription",
        "subscription.renewed": f"Renewed the {after_plan} plan for another month",
        "subscription.renewal_failed": "The renewal payment was declined",
        "subscription.ended": f"The subscription ended, now on the {after_plan} plan",
        "subscription.unpaid": "The subscription became unpaid after its payment retries",
        "subscription.restarted": f"Restarted the subscription on the {after_plan} plan",
        "subscription.reactivated": "The subscription is active again, its invoice paid",
    }
    return sentences.get(entry.kind, entry.kind)


def _recharge_switch(before: State | None, after: State | None) -> str:
    was, now = bool((before or {}).get("enabled")), bool((after or {}).get("enabled"))
    if was != now:
        return "Turned auto-recharge on" if now else "Turned auto-recharge off"
    return "Changed the auto-recharge settings"


def _credits(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    credits = _int(a, "credits")
    return {
        "credits.topped_up": f"Topped up {credits:,} credits",
        "credits.recharged": f"Auto-recharged {credits:,} credits",
        "credits.recharge_failed": "An auto-recharge payment was declined",
        "auto_recharge.updated": _recharge_switch(b, a),
        "auto_recharge.disabled": "Auto-recharge was turned off after declined payments",
    }.get(entry.kind, entry.kind)


def _people(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    email, role = _text(a, "email") or _text(b, "email", "someone"), (_text(a, "role") or _text(b, "role")).title()
    as_role = f" as {role}" if role else ""
    return {
        "member.added": f"Added {email}{as_role}",
        "member.removed": f"Removed {email} from the team",
        "invitation.created": f"Invited {email}{as_role}",
        "invitation.revoked": f"Revoked the invitation of {email}",
        "invitation.accepted": f"{email} accepted the invitation and joined{as_role}",
        "invitation.withdrawn": f"Withdrew the invitation of {email}: it could no longer be used",
    }.get(entry.kind, entry.kind)


def _agents(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    name = _text(a, "name") or _text(b, "name") or names.get(entry.subject_id or "", "")
    mode = MODES.get(_text(a, "mode"), _text(a, "mode"))
    return {
        "agent.created": f"Created the agent {name}",
        "agent.archived": f"Archived the agent {name}",
        "agent.restored": f"Restored the agent {name}",
        "agent.deleted": f"Deleted the agent {name}",
        "agent.access_changed": f"Set {name or 'an agent'}'s visibility to {mode}",
    }.get(entry.kind, entry.kind)


def _other(entry: Entry, names: Mapping[str, str]) -> str:
    b, a = entry.before, entry.after
    sold = f"Sold a pass for {names[_text(a, 'agent')]}" if _text(a, "agent") in names else "Sold a pass"
    return {
        "organization.created": f"Created the organization on the {_plan_name(_text(a, 'plan'))} plan",
        "invoice.paid": "Paid an invoice that was owed",
        "invoice.payment_failed": "An invoice's payment was declined",
        "invoice.voided": "Voided an invoice: the bank's verification ran out of time"
        if _text(a, "reason") == "verification_expired" else "Voided an invoice",
        "payment.refunded": "Gave back a payment that could not be applied: nothing was bought with it",
        "payment_method.updated": f"Changed the card to {_card(a)}" if b and b.get("last4")
        else f"Added the card {_card(a)}",
        "billing_details.updated": "Updated the billing details",
        "pass.sold": sold,
        "pass.created": sold,
        "pass.refunded": "Refunded a visitor's pass",
    }.get(entry.kind, entry.kind)


FAMILY_WORDS: dict[str, Callable[[Entry, Mapping[str, str]], str]] = {
    "addon": _addon, "plan": _plan, "subscription": _plan, "credits": _credits, "auto_recharge": _credits,
    "member": _people, "invitation": _people, "agent": _agents,
}


def what(entry: Entry, names: Mapping[str, str] | None = None) -> str:
    """The change as a sentence; the kind itself when it has no words here. ``names``: agents' names
    by id, for the entries that name an agent only by its id."""
    try:
        return FAMILY_WORDS.get(entry.kind.split(".", 1)[0], _other)(entry, names or {})
    except (TypeError, ValueError, AttributeError):  # a payload of another shape than these words expect
        return entry.kind


def _card(state: State | None) -> str:
    brand, last4 = _text(state, "brand").title(), _text(state, "last4")
    return f"{brand} •••• {last4}".strip() if last4 else "on file"


# --- before → after ------------------------------------------------------------------------------

LABELS = {
    "active_slots": "Slots now", "renewal_slots": "Slots from next period", "plan": "Plan", "status": "Status",
    "scheduled_plan": "Scheduled plan", "period_end": "Period ends", "topup": "Top-up credits",
    "credits": "Credits", "enabled": "Auto-recharge", "threshold": "Below", "max_per_month": "Per month at most",
    "email": "Email", "role": "Role", "name": "Name", "archived": "Archived", "mode": "Visibility",
    "price": "Price", "access_days": "Access days", "message_credits": "Messages", "credits_left": "Messages left",
    "company": "Company", "address": "Address", "failures": "Declines", "decline_code": "Decline",
    "visitor_email": "Visitor", "net": "Net", "platform_fee": "Platform fee", "expires_at": "Expires",
}
MONEY_KEYS = {"price", "net", "platform_fee", "amount"}
HIDDEN = {"currency", "owner", "organization", "invoice", "member", "agent", "reason"}  # ids, or said elsewhere
SAID = {"agent": {"name", "archived"}, "member": {"email", "role"}, "invitation": {"email", "role"}}  # in the sentence
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _value(key: str, value: Any, currency: str) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return {"enabled": ("On", "Off"), "archived": ("Yes", "No")}.get(key, ("Yes", "No"))[0 if value else 1]
    if isinstance(value, int):
        return money(value, currency) if key in MONEY_KEYS else f"{value:,}"
    text = str(value)
    if _ISO.match(text):
        try:
            return long_date(datetime.fromisoformat(text))
        except ValueError:
            return text
    if key == "mode":
        return MODES.get(text, text)
    if key in ("plan", "scheduled_plan", "role", "status", "brand"):
        return text.replace("_", " ").capitalize()
    return text


def changes(entry: Entry, limit: int = 4) -> list[str]:
    """What the entry's before and after say, as ``Label: before → after`` lines (the keys that
    changed; all of them for something new or gone), at most ``limit``."""
    before, after = entry.before or {}, entry.after or {}
    currency = entry.currency or _text(after, "currency") or _text(before, "currency") or "usd"
    if entry.kind == "payment_method.updated":
        return [f"Card: {_card(before)} → {_card(after)}" if before.get("last4") else f"Card: {_card(after)}"]
    lines = []
    said = SAID.get(entry.kind.split(".", 1)[0], set())
    for key in dict.fromkeys([*before, *after]):
        if key in HIDDEN or key in said or (key in before and key in after and before[key] == after[key]):
            continue
        label = LABELS.get(key, key.replace("_", " ").capitalize())
        if key in before and key in after:
            lines.append(f"{label}: {_value(key, before[key], currency)} → {_value(key, after[key], currency)}")
        elif key in before and entry.after is not None:  # what the change ended, such as a refunded pass's messages
            lines.append(f"{label}: was {_value(key, before[key], currency)}")
        else:
            lines.append(f"{label}: {_value(key, after.get(key, before.get(key)), currency)}")
    return lines[:limit]


def kind_options() -> list[tuple[str, list[tuple[str, str]]]]:
    """The filter's option groups: each family, then its kinds with words of their own."""
    return [(label, [(prefix, f"All: {label.lower()}")] + [(kind, text) for kind, text in KIND_LABELS.items()
                                                           if kind.startswith(prefix)])
            for prefix, label in FAMILIES]


def kind_label(kind: str) -> str:
    """A kind or a family as the filter names it."""
    for prefix, label in FAMILIES:
        if kind == prefix:
            return label
    return KIND_LABELS.get(kind, kind)
