"""The Agents page's Visibility section (SPEC §13): each agent's access mode, and its Paid Access
Configuration as the form shows it — the price in dollars and cents on the page, an integer of minor
units in the service, read from the text without a float."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from slotwise import repositories as repo
from slotwise.errors import InvalidRequest, SlotwiseError
from slotwise.models import Agent
from slotwise.services import paid_access as pa
from slotwise.web.deps import Page, quantity_or_none

MODES = (
    ("free", "Free", "Anyone can chat with this agent."),
    ("restricted", "Restricted", "Only your contacts can chat with this agent."),
    ("paid", "Pay for Access", "Visitors pay you for a pass to chat with this agent; the revenue is yours."),
)
MODE_LABELS = {code: label for code, label, _ in MODES}
CURRENCIES = ("usd", "eur", "gbp")
DEFAULTS = {"currency": "usd", "access_days": "30", "message_credits": "500"}  # a new configuration's suggestion

# Dollars and cents as a person types them: "9", "9.9", "9.99", "1,250.00", "$9.99". Digits of
# ASCII only (``int`` alone would take other scripts' digits and ``1_0``), never a float.
_PRICE = re.compile(r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,9})(?:\.([0-9]{1,2}))?")


def parse_price(text: str) -> int:
    """The price in minor units, or ``invalid_request`` on ``price``; the service checks it is > 0."""
    value = text.strip().removeprefix("$").removeprefix("€").removeprefix("£").strip()
    found = _PRICE.fullmatch(value)
    if found is None:
        raise InvalidRequest("Enter the price in dollars and cents, such as 9.99.", field="price")
    whole, cents = found.group(1).replace(",", ""), (found.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def price_text(amount: int) -> str:
    """Minor units as the form shows them: ``999`` → ``9.99``."""
    return f"{amount // 100}.{amount % 100:02d}"


@dataclass(frozen=True, slots=True)
class VisibilityForm:
    """What was typed into one agent's Visibility form (kept when it is refused)."""

    agent_id: str
    mode: str
    price: str
    currency: str
    access_days: str
    message_credits: str

    def config(self) -> pa.PaidConfig:
        """The Paid Access Configuration typed, or ``invalid_request`` naming the field."""
        days, credits = quantity_or_none(self.access_days), quantity_or_none(self.message_credits)
        if days is None:
            raise InvalidRequest(f"Access lasts a whole number of days, 1 to {pa.MAX_ACCESS_DAYS:,}.",
                                 field="access_days")
        if credits is None:
            raise InvalidRequest(f"A pass gives a whole number of messages, 1 to {pa.MAX_MESSAGE_CREDITS:,}.",
                                 field="message_credits")
        return pa.PaidConfig(parse_price(self.price), self.currency.strip().lower(), days, credits).check()


@dataclass(frozen=True, slots=True)
class AgentVisibility:
    agent: Agent
    mode: str
    config: pa.PaidConfig | None  # as saved
    form: VisibilityForm  # as the form shows it: saved values, or what was typed and refused
    error: SlotwiseError | None
    error_field: str | None
    paywall_path: str | None

    @property
    def currencies(self) -> tuple[str, ...]:
        chosen = self.form.currency.lower()
        return CURRENCIES if chosen in CURRENCIES or not chosen else (*CURRENCIES, chosen)


@dataclass(frozen=True, slots=True)
class VisibilitySection:
    agents: list[AgentVisibility]
    can_change: bool
    subscribed: bool
    modes: tuple[tuple[str, str, str], ...] = MODES
    labels: dict[str, str] = field(default_factory=lambda: dict(MODE_LABELS))


def _saved_form(agent: Agent) -> VisibilityForm:
    config = pa.config_of(agent)
    if config is None:
        return VisibilityForm(agent.id, agent.access_mode, "", DEFAULTS["currency"], DEFAULTS["access_days"],
                              DEFAULTS["message_credits"])
    return VisibilityForm(agent.id, agent.access_mode, price_text(config.price), config.currency,
                          str(config.access_days), str(config.message_credits))


def visibility_section(page: Page, agents: Sequence[Agent], *, typed: VisibilityForm | None = None,
                       error: SlotwiseError | None = None) -> VisibilitySection:
    """Every agent not archived, with its mode and configuration; ``typed`` and ``error`` are a
    refused form, shown again on its agent."""
    rows = []
    for agent in agents:
        if agent.archived_at is not None:
            continue
        mine = typed is not None and typed.agent_id == agent.id
        wrong = error.details.get("field") if mine and error is not None else None
        rows.append(AgentVisibility(
            agent=agent, mode=agent.access_mode, config=pa.config_of(agent),
            form=typed if mine and typed is not None else _saved_form(agent),
            error=error if mine else None, error_field=wrong if isinstance(wrong, str) else None,
            paywall_path=f"/pay/{agent.id}" if agent.access_mode == "paid" else None))
    sub = repo.current_subscription(page.db, page.org.id)
    return VisibilitySection(rows, page.is_manager, sub is not None and sub.status in pa.SUBSCRIBED)
