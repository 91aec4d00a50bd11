"""The billing details printed on an organization's invoices: billing email, company name, address."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from slotwise import repositories as repo
from slotwise.errors import InvalidRequest, NotFound
from slotwise.models import Organization
from slotwise.services import audit
from slotwise.services.context import Actor, require_owner
from slotwise.services.snapshot import locked_org

MAX_EMAIL = 254  # RFC 5321's longest forward path, less the angle brackets
MAX_COMPANY = 200
MAX_ADDRESS = 500
MAX_ADDRESS_LINES = 6  # what fits the "Billed to" block of an invoice
# One address, no display name: something@domain.tld, no spaces, one @. A typo is caught here; whether
# the mailbox exists is the customer's business.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


@dataclass(frozen=True, slots=True)
class BillingDetails:
    email: str | None
    company: str
    address: str  # lines joined by "\n"

    @classmethod
    def of(cls, org: Organization) -> BillingDetails:
        return cls(org.billing_email, org.billing_company or "", org.billing_address or "")

    @property
    def address_lines(self) -> list[str]:
        return self.address.split("\n") if self.address else []

    @property
    def saved(self) -> bool:
        return bool(self.email or self.company or self.address)


def _printable(text: str, field: str, what: str) -> None:
    if any(ch < " " or ch == "\x7f" for ch in text):
        raise InvalidRequest(f"{what} can't contain control characters.", field=field)


def clean_details(*, email: str, company: str, address: str) -> BillingDetails:
    """The details as stored, or ``invalid_request`` naming the ``field``: an email is required and
    must look like one; company and address may be empty; an address keeps its lines (trimmed, the
    blank ones dropped, any line ending read as one)."""
    email = email.strip()
    if not email:
        raise InvalidRequest("Enter the billing email invoices are sent to.", field="email")
    if len(email) > MAX_EMAIL:
        raise InvalidRequest(f"The billing email can be at most {MAX_EMAIL} characters.", field="email")
    if not _EMAIL.fullmatch(email):
        raise InvalidRequest("Enter a billing email like billing@example.com.", field="email")
    company = company.strip()
    _printable(company, "company", "The company name")
    if len(company) > MAX_COMPANY:
        raise InvalidRequest(f"The company name can be at most {MAX_COMPANY} characters.", field="company")
    lines = [line.strip() for line in address.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    for line in lines:
        _printable(line.replace("\t", " "), "address", "The address")
    if len(lines) > MAX_ADDRESS_LINES:
        raise InvalidRequest(f"The address can have at most {MAX_ADDRESS_LINES} lines.", field="address")
    joined = "\n".join(line.replace("\t", " ") for line in lines)
    if len(joined) > MAX_ADDRESS:
        raise InvalidRequest(f"The address can be at most {MAX_ADDRESS} characters.", field="address")
    return BillingDetails(email, company, joined)


def update_billing_details(db: Session, *, actor: Actor, email: str, company: str, address: str,
                           at: datetime) -> BillingDetails:
    """Replace the organization's billing details (Owner only). Every invoice, including those issued
    before, is printed with the details current when it is viewed or downloaded: the amounts and lines
    of a paid invoice never change, only whom it is addressed to. The same details again change
    nothing and leave no entry. ``at``: the billing time."""
    require_owner(actor, "Billing details")
    details = clean_details(email=email, company=company, address=address)
    org = locked_org(db, actor.org_id)
    before = BillingDetails.of(org)
    if before != details:
        org.billing_email, org.billing_company, org.billing_address = (
            details.email, details.company or None, details.address or None)
        audit.record(db, org_id=org.id, by=audit.by_user(db, actor), kind="billing_details.updated",
                     at=at, before=asdict(before), after=asdict(details))
    return details


def organization_with_details(db: Session, org_id: str) -> tuple[Organization, BillingDetails]:
    """The organization (what invoices print of it) and its billing details."""
    org = repo.organization(db, org_id)
    if org is None:
        raise NotFound("No such organization.")
    return org, BillingDetails.of(org)
