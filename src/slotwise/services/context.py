"""Who is acting, and what the services need from outside (catalog, card gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slotwise.catalog import Catalog
from slotwise.errors import Forbidden, OwnerOnly
from slotwise.gateway import CardGateway

Role = Literal["owner", "admin", "member"]


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    org_id: str
    role: Role

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


@dataclass(frozen=True, slots=True)
class Env:
    catalog: Catalog
    gateway: CardGateway
    quantity_changes_per_hour: int = 30  # add/remove operations per organization (SPEC §9 abuse guard)


def require_owner(actor: Actor, what: str = "Add-ons") -> None:
    """Add-ons, plan and payment method are Owner Only (the help page's wording, naming what was
    refused)."""
    if not actor.is_owner:
        raise OwnerOnly() if what == "Add-ons" else OwnerOnly.for_(what)


def require_manager(actor: Actor) -> None:
    """Members and invitations are managed by the Owner and admins."""
    if actor.role not in ("owner", "admin"):
        raise Forbidden("Only the organization owner or an admin can manage the team.")
