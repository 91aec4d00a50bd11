"""The tables. Every tenant table carries ``org_id``; money columns are integers of minor units."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def email_key(email: str) -> str:
    """The one form emails are compared in, on every database: trimmed and case-folded (Unicode,
    not just ASCII: SQLite's ``lower()`` leaves ``Ö`` alone). The address as typed is kept for display."""
    return email.strip().casefold()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Id = String(32)


class ClockState(Base):
    """The simulated clock, shared by every process through the database."""

    __tablename__ = "clock_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    now: Mapped[datetime] = mapped_column(UTCDateTime)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan_code: Mapped[str] = mapped_column(String(64))
    invoice_seq: Mapped[int] = mapped_column(Integer, default=0)
    card_token: Mapped[str | None] = mapped_column(String(64))
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Printed on invoices (services/billing_details.py checks them); NULL until the Owner saves them.
    billing_email: Mapped[str | None] = mapped_column(String(254))
    billing_company: Mapped[str | None] = mapped_column(String(200))
    billing_address: Mapped[str | None] = mapped_column(String(500))  # lines joined by "\n"
    processor_customer_id: Mapped[str | None] = mapped_column(String(64))  # the gateway's customer


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)  # see email_key()
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (CheckConstraint("role in ('owner', 'admin', 'member')", name="role"),)


class ApiToken(Base):
    """A user's API token, kept only as its SHA-256 (the token itself is shown once)."""

    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), index=True)  # see email_key()
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("org_id", "email_key", name="uq_invitations_org_id_email_key"),)


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Who may talk to it (SPEC §13): free | restricted (the organization's contacts) | paid (a pass).
    access_mode: Mapped[str] = mapped_column(String(16), default="free", server_default="free")
    # The Paid Access Configuration: what a pass costs and gives (all set, or none). A change
    # applies to passes sold afterwards; a pass keeps what it was sold with.
    paid_price: Mapped[int | None] = mapped_column(BigInteger)
    paid_currency: Mapped[str | None] = mapped_column(String(3))
    paid_access_days: Mapped[int | None] = mapped_column(Integer)
    paid_message_credits: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        Index("ix_agents_org_archived", "org_id", "archived_at"),
        CheckConstraint("access_mode in ('free', 'restricted', 'paid')", name="access_mode"),
    )


class Subscription(Base):
    """A paid plan. ``plan_price`` is the price locked for the current period."""

    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    plan_code: Mapped[str] = mapped_column(String(64))
    plan_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime)
    period_index: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    scheduled_plan_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("status in ('active', 'past_due', 'unpaid', 'canceled')", name="status"),
    )


class OrgAddon(Base):
    """An organization's slots of one add-on: capacity now and what the next period keeps."""

    __tablename__ = "org_addons"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    addon_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    active_slots: Mapped[int] = mapped_column(Integer)
    renewal_slots: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint(
            "0 <= renewal_slots AND renewal_slots <= active_slots AND active_slots <= 1000",
            name="slots",
        ),
    )


class Invoice(Base):
    """Never edited after it is paid. ``billing_key`` makes each period billable only once."""

    __tablename__ = "invoices"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    number: Mapped[int] = mapped_column(Integer)
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("subscriptions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    billing_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # A payment waiting for the customer's bank (SCA): the processor's intent, while the invoice is open.
    action_intent: Mapped[str | None] = mapped_column(String(128))
    # What paying a purchase invoice grants (JSON: slots, credits, a plan), kept while it waits for
    # verification so that completing it grants exactly what was bought; None for renewals.
    purchase: Mapped[str | None] = mapped_column(Text)
    lines: Mapped[list[InvoiceLine]] = relationship(
        order_by="InvoiceLine.position", cascade="all, delete-orphan", lazy="selectin"
    )
    __table_args__ = (
        UniqueConstraint("org_id", "number"),
        CheckConstraint("status in ('open', 'paid', 'void')", name="status"),
        Index("ix_invoices_org_created", "org_id", "created_at"),
        # An organization's open invoices and their retries (the sweep's claim, first-touch renewals): few
        # rows, whatever the history, because paid invoices are left out.
        Index("ix_invoices_open_org_retry", "org_id", "next_retry_at",
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
    )


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # plan | addon | credit
    code: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    days_left: Mapped[int] = mapped_column(Integer)
    days_in_period: Mapped[int] = mapped_column(Integer)


class Charge(Base):
    """One attempt to collect an invoice through the card gateway."""

    __tablename__ = "charges"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)  # slotwise doctor reads by it
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    failure_code: Mapped[str | None] = mapped_column(String(64))
    gateway_reference: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyRecord(Base):
    """The first answer to a request made with an ``Idempotency-Key``, replayed for repeats."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WebSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie's token is stored, so a leaked table
    can't be replayed; the CSRF token is per session and checked on every form and preview call."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The message the next page shows once (JSON), kept here rather than in a cookie the browser
    # could forge or garble.
    flash: Mapped[str | None] = mapped_column(Text, nullable=True)


class QuantityChange(Base):
    """One committed add or removal of add-on slots, kept an hour for the per-organization rate limit
    (in the database, so every server process counts the same changes)."""

    __tablename__ = "quantity_changes"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_quantity_changes_org_at", "org_id", "at"),)


class LoginFailure(Base):
    """A failed sign-in, kept for the sign-in rate limit, once under the email and once under the
    client address (in the database, so every server process counts the same attempts)."""

    __tablename__ = "login_failures"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))  # "email:<address>" or "ip:<client address>"
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)


class CreditAccount(Base):
    """An organization's two credit pools (SPEC §11), spent plan first, then top-up, and its
    auto-recharge settings. A balance only changes together with a ``credit_ledger`` entry, and each
    equals the sum of its entries (``slotwise doctor`` checks both that and that none is negative).

    ``refills_at``: when the plan pool is next refilled (unused plan credits expire then): a free
    organization's next monthly anchor, a subscription's ``period_end``; NULL while nothing is due
    (a ``past_due``/``unpaid`` period is refilled when it is paid). A refill that came due is work due
    for the organization, like a renewal.
    """

    __tablename__ = "credit_accounts"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    plan_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    topup_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    plan_allowance: Mapped[int] = mapped_column(BigInteger, default=0)  # what the current period granted
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the credit period the pool belongs to
    refills_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    used_in_period: Mapped[int] = mapped_column(BigInteger, default=0)  # credits spent since period_start
    # The plan part of the latest debit: PostgreSQL's RETURNING shows only new values, and the spend's
    # one statement needs the old balance's share.
    last_from_plan: Mapped[int] = mapped_column(BigInteger, default=0)
    recharge_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    recharge_threshold: Mapped[int] = mapped_column(BigInteger, default=100)
    recharge_max_per_period: Mapped[int] = mapped_column(Integer, default=1)
    recharges_in_period: Mapped[int] = mapped_column(Integer, default=0)
    # The job id of the recharge in flight (one at a time per organization), NULL when none is.
    recharge_job_id: Mapped[str | None] = mapped_column(String(32))
    recharge_failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row
    recharge_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_recharged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recharge_disabled_reason: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("plan_balance >= 0 AND topup_balance >= 0", name="balances"),
    )


class CreditEntry(Base):
    """One immutable movement of credits: ``plan_delta`` and ``topup_delta`` are what it did to each
    pool. Kinds: refill, expiry (unused plan credits at a period's end), spend, topup, recharge,
    adjustment. A spend carries the platform's ``reference``, unique per organization for ever."""

    __tablename__ = "credit_ledger"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    plan_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    topup_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    reference: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))  # a spend's body, to tell a repeat from a conflict
    activity: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(16))
    units: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[int | None] = mapped_column(BigInteger)
    agent_id: Mapped[str | None] = mapped_column(String(32))  # no foreign key: a deleted agent's spends stay
    playground: Mapped[bool] = mapped_column(Boolean, default=False)
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    # A spend's balances after it (what it answered, replayed to a repeat of its reference).
    plan_after: Mapped[int | None] = mapped_column(BigInteger)
    topup_after: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("org_id", "reference", name="uq_credit_ledger_org_id_reference"),
        Index("ix_credit_ledger_org_created", "org_id", "created_at"),
        CheckConstraint(
            "kind in ('refill', 'expiry', 'spend', 'topup', 'recharge', 'adjustment')", name="kind"),
    )


class CreditUsage(Base):
    """Spends rolled up per organization, day (UTC, billing time) and agent (``''``: none named), kept
    in the spend's transaction so a usage chart reads a row per day, whatever the number of spends."""

    __tablename__ = "credit_usage"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    agent_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    messages: Mapped[int] = mapped_column(BigInteger, default=0)  # units of ``message`` spends


class Job(Base):
    """Work done off the request path by a worker (``slotwise worker``, or in-process in ``serve``):
    written in the transaction that needs it, claimed by one worker at a time (a lease in
    ``locked_until``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), deleted when done."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    payload: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # wall-clock time
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessorEvent(Base):
    """A card processor's webhook event, stored once by its id whatever how often it is delivered;
    handled by the worker (``handled_at``), in any order."""

    __tablename__ = "processor_events"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[str] = mapped_column(Text)  # the event's object, JSON
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Contact(Base):
    """A visitor the organization knows: added by a pass purchase, or by the organization (SPEC §13)."""

    __tablename__ = "contacts"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    email: Mapped[str] = mapped_column(String(320))  # as typed
    email_key: Mapped[str] = mapped_column(String(320))  # ``email_key(email)``, unique per organization
    source: Mapped[str] = mapped_column(String(16))  # purchase | api
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("org_id", "email_key"),
        Index("ix_contacts_org_created", "org_id", "created_at", "id"),
    )


class Pass(Base):
    """A visitor's paid access to one agent (SPEC §13): what was paid (gross, the platform's fee, net
    to the organization), until when, and how many messages are left. Never edited but for its
    credits and a refund; the visitor's token is kept only as its SHA-256."""

    __tablename__ = "passes"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id"))
    visitor_email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320))
    price: Mapped[int] = mapped_column(BigInteger)  # gross, minor units
    currency: Mapped[str] = mapped_column(String(3))
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)
    access_days: Mapped[int] = mapped_column(Integer)
    message_credits: Mapped[int] = mapped_column(Integer)
    credits_left: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund_reference: Mapped[str | None] = mapped_column(String(64))
    gateway_reference: Mapped[str] = mapped_column(String(64), index=True)  # the processor's payment
    checkout_key: Mapped[str] = mapped_column(String(128))  # the paywall form's one-time id
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    __table_args__ = (
        UniqueConstraint("agent_id", "checkout_key"),
        Index("ix_passes_agent_email", "agent_id", "email_key", "expires_at"),
        Index("ix_passes_org_created", "org_id", "created_at", "id"),
        CheckConstraint("credits_left >= 0", name="credits_left_not_negative"),
        CheckConstraint("price > 0 and platform_fee >= 0 and net = price - platform_fee", name="revenue"),
    )


class PassCheckout(Base):
    """A pass bought on the paywall whose payment waits for the visitor's bank (SCA): what the pass
    will be, at the price quoted then, and the processor's intent. It becomes the pass (same id) once
    the payment is verified — by the visitor's verify call, the processor's webhook or the billing
    run's reconciliation — and is deleted if the bank refuses, or by the billing run once it has
    waited a week unverified. Grants nothing meanwhile."""

    __tablename__ = "pass_checkouts"
    id: Mapped[str] = mapped_column(Id, primary_key=True)  # the pass's id to be
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    checkout_key: Mapped[str] = mapped_column(String(128))
    visitor_email: Mapped[str] = mapped_column(String(320))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    access_days: Mapped[int] = mapped_column(Integer)
    message_credits: Mapped[int] = mapped_column(Integer)
    action_intent: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Integer primary keys that count up on every database (SQLite's ROWID; PostgreSQL's BIGSERIAL): the
# order events and audit entries were written in.
Seq = BigInteger().with_variant(Integer, "sqlite")


class WebhookEndpoint(Base):
    """Where the platform wants its events (SPEC §14): a URL, the event types it takes (NULL: all),
    and its Standard Webhooks signing secret, kept sealed (never in clear at rest). A rotated secret
    keeps signing beside the new one until ``previous_secret_until``."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[str | None] = mapped_column(Text)  # JSON list; NULL: every type
    description: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # wall clock; NULL while it answers
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """The outbox: one row per thing the platform may learn of, written in the transaction of the
    change it describes (so it exists if and only if that change committed). ``id`` is the stable
    ``webhook-id``; ``seq`` is the order of writing; ``payload`` is small (ids and the new state)."""

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(Id, unique=True)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_events_org_seq", "org_id", "seq"),)


class WebhookStream(Base):
    """What one endpoint has been sent of one organization's events (``stream_key``: the org id, or
    ``''`` for events of no organization): delivered in ``seq`` order, one worker at a time (a lease
    in ``locked_until``), the next try due at ``run_at`` (wall clock)."""

    __tablename__ = "webhook_streams"
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                                             primary_key=True)
    stream_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)  # NULL: nothing to send
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event owed to one endpoint: pending until the endpoint answers 2xx (delivered), or until
    the retries run out (failed). Written with the event, so nothing is owed that did not happen."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    stream_key: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # wall clock
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_webhook_deliveries_stream", "endpoint_id", "stream_key", "status", "event_seq"),
        UniqueConstraint("endpoint_id", "event_seq"),
        CheckConstraint("status in ('pending', 'delivered', 'failed')", name="status"),
    )


class WebhookAttempt(Base):
    """The delivery log: one row per request made to an endpoint (the operator reads and replays it)."""

    __tablename__ = "webhook_attempts"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)  # wall clock
    status_code: Mapped[int | None] = mapped_column(Integer)  # NULL: no answer (refused, timed out)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(300))
    replay: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "attempted_at"),)


class AuditEntry(Base):
    """One billing change, for the Owner (SPEC §14): who (a user, the operator, or the system), what
    (``kind``), before → after (small JSON), and the money and invoice where money moved. Immutable:
    nothing updates or deletes a row (the database refuses both)."""

    __tablename__ = "audit_entries"
    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(Id, unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(32))  # the user's id; NULL for operator and system
    actor_label: Mapped[str | None] = mapped_column(String(320))  # the user's email then, for display
    kind: Mapped[str] = mapped_column(String(48))
    subject_id: Mapped[str | None] = mapped_column(String(64))  # the agent, pass, member … it is about
    before: Mapped[str | None] = mapped_column(Text)  # JSON
    after: Mapped[str | None] = mapped_column(Text)  # JSON
    amount: Mapped[int | None] = mapped_column(BigInteger)  # minor units, where money moved
    currency: Mapped[str | None] = mapped_column(String(3))
    invoice_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # billing clock
    __table_args__ = (
        Index("ix_audit_entries_org_seq", "org_id", "seq"),
        Index("ix_audit_entries_org_kind_seq", "org_id", "kind", "seq"),
        CheckConstraint("actor_type in ('user', 'operator', 'system')", name="actor_type"),
    )


# The database itself refuses to change or remove an audit entry (created with the table, here for
# ``create_all`` and in migration 0012 for ``slotwise migrate``). TRUNCATE, a test's reset, is not a
# row change.
AUDIT_IMMUTABLE: dict[str, tuple[str, ...]] = {
    "postgresql": (
        "CREATE OR REPLACE FUNCTION audit_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit entries are immutable'; END $$",
        "CREATE TRIGGER audit_entries_immutable BEFORE UPDATE OR DELETE ON audit_entries "
        "FOR EACH ROW EXECUTE FUNCTION audit_entries_immutable()",
    ),
    "sqlite": (
        "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
        "BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END",
        "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
        "BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END",
    ),
}
for _dialect, _statements in AUDIT_IMMUTABLE.items():
    for _statement in _statements:
        event.listen(AuditEntry.__table__, "after_create",
                     DDL(_statement).execute_if(dialect=_dialect))  # type: ignore[no-untyped-call]
