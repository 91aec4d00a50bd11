"""The catalog of plans and add-ons, read from TOML (the packaged default or ``SLOTWISE_CATALOG``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

Resource = Literal["agents", "members"]
RESOURCES: tuple[Resource, ...] = ("agents", "members")

MIN_SLOTS_PER_CHANGE = 1
MAX_SLOTS_PER_CHANGE = 100
MAX_SLOTS_PER_ADDON = 1000


class CatalogError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    name: str
    rank: int
    price: int | None  # None: custom (enterprise)
    currency: str
    agents: int | None
    members: int | None
    teams: bool
    credits: int | None
    self_serve: bool

    @property
    def is_free(self) -> bool:
        return self.price == 0

    def included(self, resource: Resource) -> int:
        value = self.agents if resource == "agents" else self.members
        return value or 0


@dataclass(frozen=True, slots=True)
class Addon:
    code: str
    name: str
    resource: Resource
    price_per_slot: int
    currency: str
    available_on: Literal["paid", "teams"]

    def offered_on(self, plan: Plan) -> bool:
        if plan.is_free:
            return False
        return plan.teams if self.available_on == "teams" else True

    def unavailable_reason(self, plan: Plan) -> str | None:
        if self.offered_on(plan):
            return None
        if plan.is_free:
            return "Add-ons need an active subscription. Choose a paid plan first."
        return f"{self.name} need a plan with teams. {plan.name} has no team option."


Activity = Literal["message", "document", "voice", "tool"]
ACTIVITIES: tuple[Activity, ...] = ("message", "document", "voice", "tool")
Model = Literal["standard", "premium"]
DEFAULT_COSTS = {"message": 1, "message_premium": 5, "document": 10, "voice": 2, "tool": 1}


@dataclass(frozen=True, slots=True)
class CreditPack:
    credits: int
    price: int
    currency: str


@dataclass(frozen=True, slots=True)
class CreditTerms:
    """What one unit of each activity costs in credits, and the pack Top Up Now and auto-recharge sell."""

    costs: dict[str, int]  # keys: the activities, and ``message_premium``
    pack: CreditPack

    def unit_cost(self, activity: Activity, model: Model = "standard") -> int:
        if activity == "message" and model == "premium":
            return self.costs["message_premium"]
        return self.costs[activity]


DEFAULT_CREDITS = CreditTerms(costs=dict(DEFAULT_COSTS), pack=CreditPack(credits=1000, price=2000, currency="usd"))


@dataclass(frozen=True, slots=True)
class Catalog:
    plans: dict[str, Plan]
    addons: dict[str, Addon]
    credits: CreditTerms = DEFAULT_CREDITS
    # The platform's share of each pass a visitor buys (SPEC §13), in basis points: 500 = 5%.
    platform_fee_bps: int = 500

    def plan(self, code: str) -> Plan:
        return self.plans[code]

    def addon(self, code: str) -> Addon:
        return self.addons[code]

    def addon_for(self, resource: Resource) -> Addon:
        return next(a for a in self.addons.values() if a.resource == resource)

    def plans_by_rank(self) -> list[Plan]:
        return sorted(self.plans.values(), key=lambda p: p.rank)


def _int(entry: dict[str, Any], key: str, where: str, default: int | None = None) -> int | None:
    value = entry.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CatalogError(f"{where}.{key} must be a non-negative integer")
    return value


def parse_catalog(data: dict[str, Any]) -> Catalog:
    plans: dict[str, Plan] = {}
    for code, entry in data.get("plans", {}).items():
        where = f"plans.{code}"
        plans[code] = Plan(
            code=code,
            name=str(entry.get("name", code.title())),
            rank=_int(entry, "rank", where, 0) or 0,
            price=_int(entry, "price", where),
            currency=str(entry.get("currency", "usd")).lower(),
            agents=_int(entry, "agents", where),
            members=_int(entry, "members", where),
            teams=bool(entry.get("teams", False)),
            credits=_int(entry, "credits", where),
            self_serve=bool(entry.get("self_serve", True)) and entry.get("price") is not None,
        )
    if "free" not in plans or plans["free"].price != 0:
        raise CatalogError("the catalog needs a 'free' plan with price 0")
    addons: dict[str, Addon] = {}
    for code, entry in data.get("addons", {}).items():
        where = f"addons.{code}"
        resource = entry.get("resource")
        if resource not in ("agents", "members"):
            raise CatalogError(f"{where}.resource must be 'agents' or 'members'")
        available_on = entry.get("available_on", "paid")
        if available_on not in ("paid", "teams"):
            raise CatalogError(f"{where}.available_on must be 'paid' or 'teams'")
        price = _int(entry, "price_per_slot", where)
        if price is None:
            raise CatalogError(f"{where}.price_per_slot is required")
        addons[code] = Addon(
            code=code,
            name=str(entry.get("name", code)),
            resource=resource,
            price_per_slot=price,
            currency=str(entry.get("currency", "usd")).lower(),
            available_on=available_on,
        )
    for resource in RESOURCES:
        if sum(1 for a in addons.values() if a.resource == resource) != 1:
            raise CatalogError(f"the catalog needs exactly one add-on for {resource}")
    fee = _int(data.get("paid_access", {}), "platform_fee_basis_points", "paid_access", 500)
    if fee is None or fee > 10_000:
        raise CatalogError("paid_access.platform_fee_basis_points must be 0 to 10000 (100%)")
    return Catalog(plans=plans, addons=addons, credits=_credit_terms(data.get("credits", {})), platform_fee_bps=fee)


def _credit_terms(data: dict[str, Any]) -> CreditTerms:
    costs = {key: _int(data.get("costs", {}), key, "credits.costs", default) or 0
             for key, default in DEFAULT_COSTS.items()}
    unknown = set(data.get("costs", {})) - set(DEFAULT_COSTS)
    if unknown:
        raise CatalogError(f"credits.costs has unknown activities: {', '.join(sorted(unknown))}")
    pack = data.get("pack", {})
    credits = _int(pack, "credits", "credits.pack", 1000) or 0
    price = _int(pack, "price", "credits.pack", 2000)
    if credits < 1 or price is None:
        raise CatalogError("credits.pack needs credits >= 1 and a price")
    return CreditTerms(costs=costs, pack=CreditPack(credits=credits, price=price,
                                                    currency=str(pack.get("currency", "usd")).lower()))


@cache
def load_catalog(path: str | None = None) -> Catalog:
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("slotwise").joinpath("catalog.toml").read_text(encoding="utf-8")
    return parse_catalog(tomllib.loads(text))
