"""Paid agents — "Pay for Access" (SPEC §13): who may talk to an agent, the passes visitors buy, the
access check before every visitor message, the message's spend, and the organization's revenue.

* An agent is ``free`` (anyone), ``restricted`` (the organization's contacts) or ``paid`` (a visitor
  holding a valid pass). The Owner or an Admin sets it; ``paid`` needs an active subscription and a
  complete Paid Access Configuration (price, currency, access days, message credits), which applies
  to passes sold afterwards — a pass keeps what it was sold with.
* A visitor buys a pass on the agent's public paywall: the card goes through the gateway (the
  visitor's own processor customer), and only a paid charge writes anything — the pass, and the
  visitor as a contact. The form's one-time id (``checkout_key``) fixes the pass id and so the
  charge's idempotency key: submits at once are serialized on the agent row and answered with the
  first pass; a retry after a crash is charged with the same key, so never twice.
* The access check and the visitor message are the platform's hot path: one read, and one short
  transaction (the pass row locked, the organization's credits spent as ``services.spend`` does, the
  pass's credit taken) — never an ORM object graph. An unknown or expired token is ``allowed: false``.
* Revenue: each sale records gross, the platform's fee (``Catalog.platform_fee_bps``, rounded half
  up once) and net; a refund (Owner) gives the whole payment back through the gateway, revokes the
  pass at once and takes it out of the revenue.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import and_, bindparam, case, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from slotwise import repositories as repo
from slotwise.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    OwnerOnly,
    PaymentActionRequired,
    PaymentFailed,
    SlotwiseError,
    SubscriptionRequired,
)
from slotwise.gateway import ChargeOutcome, ChargeRequest, Verdict, charge_key
from slotwise.gateway.errors import GatewayUnavailable
from slotwise.models import (
    Agent,
    Contact,
    CreditAccount,
    CreditEntry,
    Organization,
    Pass,
    PassCheckout,
    Subscription,
    email_key,
    new_id,
)
from slotwise.money import round_half_up
from slotwise.services import audit, events
from slotwise.services.context import Actor, Env
from slotwise.services.snapshot import locked_org
from slotwise.services.spend import SpendRequest, Spent, spend
from slotwise.services.verification import VERIFICATION_WINDOW, VerificationPending

Mode = Literal["free", "restricted", "paid"]
Reason = Literal["none", "agent_not_public", "not_a_contact", "no_pass", "expired", "credits_used",
                 "org_out_of_credits"]
PassStatus = Literal["active", "expired", "used_up", "refunded"]
MODES: tuple[Mode, ...] = ("free", "restricted", "paid")
SUBSCRIBED = ("active", "past_due")  # an organization whose subscription is one of these may sell passes
MAX_ACCESS_DAYS, MAX_MESSAGE_CREDITS = 3650, 1_000_000
TOKEN_PREFIX = "swv_"


class AccessDenied(SlotwiseError):
    """A visitor message the access check refuses (``reason`` says why)."""

    code, status = "access_denied", 403
    default_message = "This visitor may not use this agent."


@dataclass(frozen=True, slots=True)
class PaidConfig:
    price: int  # minor units, > 0
    currency: str  # ISO 4217, lower case
    access_days: int
    message_credits: int

    def check(self) -> PaidConfig:
        """The same bounds as the API's schema, for callers that do not go through it."""
        if not isinstance(self.price, int) or self.price <= 0:
            raise InvalidRequest("The price must be a whole number of cents above zero.", field="price")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise InvalidRequest("The currency must be a three-letter code such as usd.", field="currency")
        if not 1 <= self.access_days <= MAX_ACCESS_DAYS:
            raise InvalidRequest(f"Access lasts 1 to {MAX_ACCESS_DAYS} days.", field="access_days")
        if not 1 <= self.message_credits <= MAX_MESSAGE_CREDITS:
            raise InvalidRequest(f"A pass gives 1 to {MAX_MESSAGE_CREDITS:,} messages.", field="message_credits")
        return PaidConfig(self.price, self.currency.lower(), self.access_days, self.message_credits)


def config_of(agent: Agent) -> PaidConfig | None:
    """The agent's Paid Access Configuration, if it is complete."""
    price, currency = agent.paid_price, agent.paid_currency
    days, credits = agent.paid_access_days, agent.paid_message_credits
    if price is None or currency is None or days is None or credits is None:
        return None
    return PaidConfig(price, currency, days, credits)


def platform_fee(price: int, fee_bps: int) -> int:
    """The platform's share of ``price``: the one money rule, once per sale."""
    return round_half_up(Fraction(price * fee_bps, 10_000))


def status_of(p: Any, at: datetime) -> PassStatus:
    """A pass (or a row with its ``refunded_at``, ``credits_left`` and ``expires_at``) as of ``at``."""
    if p.refunded_at is not None:
        return "refunded"
    if p.credits_left <= 0:
        return "used_up"
    if p.expires_at <= at:
        return "expired"
    return "active"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _require_manager(actor: Actor) -> None:
    if actor.role not in ("owner", "admin"):
        raise Forbidden("Only the organization owner or an admin can manage paid access and contacts.")


def _agent_in_org(db: Session, org_id: str, agent_id: str) -> Agent:
    agent = repo.agent_in_org(db, org_id, agent_id)
    if agent is None:
        raise NotFound("No such agent.")
    return agent


def _subscribed(db: Session, org_id: str) -> bool:
    sub = repo.current_subscription(db, org_id)
    return sub is not None and sub.status in SUBSCRIBED


# --- the organization's side: access modes, the configuration, contacts ---------------------------

def configure_access(db: Session, *, actor: Actor, agent_id: str, mode: str, paid: PaidConfig | None,
                     at: datetime) -> Agent:
    """Set who may talk to the agent, and (optionally) its Paid Access Configuration. ``paid`` needs
    an active subscription and a complete configuration (given now or before); a configuration may be
    saved with any mode, ready for later. Passes already sold keep what they were sold with."""
    _require_manager(actor)
    if mode not in MODES:
        raise InvalidRequest("The access mode is free, restricted or paid.", field="mode")
    locked_org(db, actor.org_id)
    agent = _agent_in_org(db, actor.org_id, agent_id)
    before = _access_settings(agent)
    if agent.archived_at is not None and mode != "free":
        raise Conflict("This agent is archived. Unarchive it before opening it to visitors.", field="mode")
    if paid is not None:
        config = paid.check()
        agent.paid_price, agent.paid_currency = config.price, config.currency
        agent.paid_access_days, agent.paid_message_credits = config.access_days, config.message_credits
    if mode == "paid":
        if config_of(agent) is None:
            raise InvalidRequest("Pay for Access needs its configuration: price, currency, access days and "
                                 "message credits.", field="paid")
        if not _subscribed(db, actor.org_id):
            raise SubscriptionRequired("Pay for Access needs an active subscription. Choose a paid plan first.")
    agent.access_mode = mode
    db.flush()
    if (after := _access_settings(agent)) != before:
        audit.record(db, org_id=actor.org_id, by=audit.by_user(db, actor), kind="agent.access_changed", at=at,
                     subject_id=agent.id, before=before, after=after)
    return agent


def _access_settings(agent: Agent) -> dict[str, Any]:
    return {"mode": agent.access_mode, "price": agent.paid_price, "currency": agent.paid_currency,
            "access_days": agent.paid_access_days, "message_credits": agent.paid_message_credits}


def add_contact(db: Session, *, actor: Actor, email: str, at: datetime) -> tuple[Contact, bool]:
    """The organization adds a contact by email (verified by the platform); an email already a
    contact answers that contact. Returns ``(contact, created)``."""
    _require_manager(actor)
    locked_org(db, actor.org_id)
    return _contact(db, org_id=actor.org_id, email=email, source="api", at=at)


def _contact(db: Session, *, org_id: str, email: str, source: str, at: datetime) -> tuple[Contact, bool]:
    key = email_key(email)
    found = db.scalar(select(Contact).where(Contact.org_id == org_id, Contact.email_key == key))
    if found is not None:
        return found, False
    contact = Contact(id=new_id("con"), org_id=org_id, email=email.strip(), email_key=key, source=source,
                      created_at=at)
    db.add(contact)
    db.flush()
    return contact, True


def require_reader(actor: Actor) -> None:
    """Contacts, passes and revenue are the Owner's and Admins' (visitors' emails, the money)."""
    if actor.role not in ("owner", "admin"):
        raise Forbidden("Only the organization owner or an admin can see contacts, passes and revenue.")


def contacts_page(db: Session, *, actor: Actor, limit: int, after: str | None) -> Sequence[Contact]:
    """Oldest first."""
    require_reader(actor)
    return _page(db, Contact, actor.org_id, limit=limit, after=after, newest_first=False)


def passes_page(db: Session, *, actor: Actor, limit: int, after: str | None,
                agent_id: str | None = None) -> Sequence[Pass]:
    """Newest first; one agent's with ``agent_id``."""
    require_reader(actor)
    return _page(db, Pass, actor.org_id, limit=limit, after=after, newest_first=True,
                 where=() if agent_id is None else (Pass.agent_id == agent_id,))


def _page(db: Session, model: type[Contact] | type[Pass], org_id: str, *, limit: int, after: str | None,
          newest_first: bool, where: tuple[Any, ...] = ()) -> Sequence[Any]:
    """Up to ``limit + 1`` of the organization's rows in (created_at, id) order, after the row
    ``after`` (the list's cursor: ``invalid_request`` if it names none of the organization's)."""
    query = select(model).where(model.org_id == org_id, *where)
    if after is not None:
        cursor: Any = db.scalar(select(model).where(model.org_id == org_id, model.id == after))
        if cursor is None:
            raise InvalidRequest("starting_after is not one of this list's ids.", field="starting_after")
        later = (model.created_at < cursor.created_at) if newest_first else (model.created_at > cursor.created_at)
        beyond = (model.id < cursor.id) if newest_first else (model.id > cursor.id)
        query = query.where(or_(later, and_(model.created_at == cursor.created_at, beyond)))
    order = (model.created_at.desc(), model.id.desc()) if newest_first else (model.created_at, model.id)
    return db.scalars(query.order_by(*order).limit(limit + 1)).all()


# --- the visitor's side: the paywall ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Paywall:
    """What the public page shows: the agent's name, its organization's, and what a pass gives."""

    agent_id: str
    agent_name: str
    org_name: str
    config: PaidConfig


def paywall(db: Session, *, agent_id: str) -> Paywall:
    """The agent's paywall, or ``not_found`` if it is not sold (not paid, archived, no subscription)."""
    row = db.execute(select(Agent, Organization.name).join(Organization, Organization.id == Agent.org_id)
                     .where(Agent.id == agent_id)).one_or_none()
    if row is None:
        raise NotFound("There is no such paid agent.")
    agent, org_name = row
    config = config_of(agent)
    if agent.access_mode != "paid" or agent.archived_at is not None or config is None \
            or not _subscribed(db, agent.org_id):
        raise NotFound("There is no such paid agent.")
    return Paywall(agent.id, agent.name, org_name, config)


@dataclass(frozen=True, slots=True)
class Purchase:
    pass_: Pass
    visitor_token: str | None  # shown once: None when a repeated submit is answered with the first pass
    replayed: bool


def is_pass_id(value: str) -> bool:
    """Whether a payment's metadata names a pass (paid agents) where an invoice id would be."""
    return value.startswith("pas_")


def pass_id_for(agent_id: str, checkout_key: str) -> str:
    """The pass a paywall form buys: the same for every submit of that form and after a crash, so its
    charge's idempotency key is too."""
    return "pas_" + hashlib.sha256(f"{agent_id}\n{checkout_key}".encode()).hexdigest()[:28]


def verify_url(agent_id: str, checkout_key: str) -> str:
    """The visitor's page for a pass whose payment waits for their bank."""
    return f"/pay/{agent_id}/verify?{urlencode({'checkout': checkout_key})}"


def buy_pass(db: Session, *, env: Env, agent_id: str, email: str, payment_method: str, checkout_key: str,
             at: datetime) -> Purchase:
    """A visitor pays for a pass: charged through the gateway, then the pass and the contact are
    written; a declined card writes nothing. Serialized on the agent row, so submits of one form at
    once are one charge and one pass (the others answer it, without the token). A payment the bank
    asks the visitor to verify keeps a ``PassCheckout`` and answers ``payment_action_required``
    with the verify page; the pass comes with the verification (``verify_pass``)."""
    if not checkout_key or len(checkout_key) > 128:
        raise InvalidRequest("A checkout id of 1 to 128 characters is required.", field="checkout")
    locked = db.execute(select(Agent.id).where(Agent.id == agent_id).with_for_update()).scalar_one_or_none()
    if locked is None:
        raise NotFound("There is no such paid agent.")
    pass_id = pass_id_for(agent_id, checkout_key)
    existing = db.get(Pass, pass_id)
    if existing is not None:
        if existing.email_key != email_key(email):
            raise IdempotencyConflict("This checkout was already used for another visitor.")
        return Purchase(existing, None, True)
    if db.get(PassCheckout, pass_id) is not None:
        raise _waiting(agent_id, checkout_key)
    wall = paywall(db, agent_id=agent_id)
    org_id = db.execute(select(Agent.org_id).where(Agent.id == agent_id)).scalar_one()
    config = wall.config
    customer = env.gateway.create_customer(reference=f"visitor:{org_id}:{email_key(email)}", email=email.strip())
    card = env.gateway.attach_payment_method(customer_id=customer.id, payment_method=payment_method)
    result = env.gateway.charge_off_session(ChargeRequest(
        customer_id=customer.id, payment_method_id=card.token, amount=config.price, currency=config.currency,
        idempotency_key=charge_key(pass_id, 1), invoice_id=pass_id, org_id=org_id))
    if result.outcome is ChargeOutcome.RETRYABLE:
        raise GatewayUnavailable()
    if result.outcome is ChargeOutcome.ACTION_REQUIRED and result.action is not None:
        db.add(PassCheckout(id=pass_id, org_id=org_id, agent_id=agent_id, checkout_key=checkout_key,
                            visitor_email=email.strip(), price=config.price, currency=config.currency,
                            access_days=config.access_days, message_credits=config.message_credits,
                            action_intent=result.action.intent_id, created_at=at))
        db.flush()
        raise _waiting(agent_id, checkout_key)
    if not result.succeeded:
        raise PaymentFailed(result.failure_message, decline_code=result.decline_code or result.failure_code)
    return _sell(db, env, PassCheckout(id=pass_id, org_id=org_id, agent_id=agent_id, checkout_key=checkout_key,
                                       visitor_email=email.strip(), price=config.price, currency=config.currency,
                                       access_days=config.access_days, message_credits=config.message_credits,
                                       action_intent="", created_at=at), result.reference, at)


def _waiting(agent_id: str, checkout_key: str) -> PaymentActionRequired:
    return PaymentActionRequired("Payment needs verification: your bank asks you to confirm this payment. "
                                 "Your pass is ready once it is confirmed.", checkout=checkout_key,
                                 verify_url=verify_url(agent_id, checkout_key))


def _sell(db: Session, env: Env, bought: PassCheckout, reference: str, at: datetime) -> Purchase:
    """Write the pass that ``bought`` describes, paid by ``reference`` (now), and its contact."""
    contact, _ = _contact(db, org_id=bought.org_id, email=bought.visitor_email, source="purchase", at=at)
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    fee = platform_fee(bought.price, env.catalog.platform_fee_bps)
    sold = Pass(id=bought.id, org_id=bought.org_id, agent_id=bought.agent_id, contact_id=contact.id,
                visitor_email=bought.visitor_email, email_key=email_key(bought.visitor_email), price=bought.price,
                currency=bought.currency, platform_fee=fee, net=bought.price - fee, access_days=bought.access_days,
                message_credits=bought.message_credits, credits_left=bought.message_credits,
                expires_at=at + timedelta(days=bought.access_days), created_at=at, refunded_at=None,
                refund_reference=None, gateway_reference=reference, checkout_key=bought.checkout_key,
                token_hash=token_hash(token))
    db.add(sold)
    db.flush()
    events.emit(db, org_id=sold.org_id, type="pass.created", at=at, data={
        "pass": sold.id, "agent": sold.agent_id, "contact": contact.id, "visitor_email": sold.visitor_email,
        "price": sold.price, "currency": sold.currency, "platform_fee": fee, "net": sold.net,
        "message_credits": sold.message_credits, "expires_at": sold.expires_at.isoformat()})
    audit.record(db, org_id=sold.org_id, by=audit.By("system", label=f"visitor {sold.visitor_email}"),
                 kind="pass.created", at=at, subject_id=sold.id, amount=sold.price, currency=sold.currency,
                 after={"agent": sold.agent_id, "visitor_email": sold.visitor_email, "platform_fee": fee,
                        "net": sold.net, "message_credits": sold.message_credits,
                        "expires_at": sold.expires_at.isoformat()})
    return Purchase(sold, token, False)


def waiting_checkout(db: Session, *, agent_id: str, checkout_key: str) -> PassCheckout | None:
    return db.get(PassCheckout, pass_id_for(agent_id, checkout_key))


def verify_pass(db: Session, *, env: Env, agent_id: str, checkout_key: str, verdict: Verdict | None,
                at: datetime) -> Purchase:
    """The visitor completes their bank's verification: the processor is asked how it went (the
    sandbox's stand-in page sends its ``verdict``), and a paid one becomes the pass (its access runs
    from now). A pass already made is answered (without its token); the bank's refusal deletes the
    waiting checkout — nothing charged, nothing made — and raises ``payment_failed``."""
    if db.execute(select(Agent.id).where(Agent.id == agent_id).with_for_update()).scalar_one_or_none() is None:
        raise NotFound("There is no such paid agent.")
    pass_id = pass_id_for(agent_id, checkout_key)
    made = db.get(Pass, pass_id)
    if made is not None:
        return Purchase(made, None, True)
    waiting = db.get(PassCheckout, pass_id)
    if waiting is None:
        raise NotFound("There is no payment waiting for verification on this checkout.")
    result = env.gateway.complete_verification(intent_id=waiting.action_intent, verdict=verdict)
    if result.outcome is ChargeOutcome.RETRYABLE:
        raise GatewayUnavailable()
    if result.outcome is ChargeOutcome.ACTION_REQUIRED:
        raise VerificationPending(checkout=checkout_key)
    if not result.succeeded:
        db.delete(waiting)
        db.flush()
        raise VisitorVerificationFailed(result.failure_message)
    purchase = _sell(db, env, waiting, result.reference, at)
    db.delete(waiting)
    db.flush()
    return purchase


def complete_paid_checkout(db: Session, *, env: Env, pass_id: str, reference: str, amount: int,
                           at: datetime) -> bool:
    """The processor says the waiting payment of ``pass_id`` succeeded (a webhook, reconciliation):
    the pass is made if it was not yet. True if the payment is (now) the pass's."""
    waiting = db.get(PassCheckout, pass_id)
    if waiting is None:
        made = db.get(Pass, pass_id)
        return made is not None and made.gateway_reference == reference
    db.execute(select(Agent.id).where(Agent.id == waiting.agent_id).with_for_update())
    if db.get(Pass, pass_id) is not None or amount != waiting.price:
        return False
    _sell(db, env, waiting, reference, at)
    db.delete(waiting)
    db.flush()
    return True


def expire_waiting_checkouts(factory: sessionmaker[Session], *, env: Env, at: datetime) -> list[str]:
    """The billing run's part for the paywall: a pass payment left waiting for the visitor's bank
    longer than a purchase may wait (``verification.VERIFICATION_WINDOW``) is asked of the processor
    once more — paid after all: the pass is made; still waiting or refused: the checkout is given up
    (it granted nothing; a late payment is refunded by reconciliation). One transaction each, on
    the agent's lock as the paywall takes it. Returns the pass ids given up."""
    with factory() as db:
        due = db.execute(select(PassCheckout.id, PassCheckout.agent_id)
                         .where(PassCheckout.created_at <= at - VERIFICATION_WINDOW)).all()
    given_up = []
    for row in due:
        with factory.begin() as db:
            db.execute(select(Agent.id).where(Agent.id == row.agent_id).with_for_update())
            waiting = db.get(PassCheckout, row.id)
            if waiting is None:
                continue  # verified or refused meanwhile
            result = env.gateway.complete_verification(intent_id=waiting.action_intent)
            if result.outcome is ChargeOutcome.RETRYABLE:
                continue  # the processor did not answer: the next run asks again
            if not result.succeeded:
                given_up.append(waiting.id)
            elif db.get(Pass, waiting.id) is None:
                _sell(db, env, waiting, result.reference, at)
            db.delete(waiting)
            db.flush()
    return given_up


def pass_recorded(db: Session, pass_id: str) -> bool:
    """Whether the pass was made (so a payment event about it has nothing left to do)."""
    return db.get(Pass, pass_id) is not None


class VisitorVerificationFailed(PaymentFailed):
    """The visitor's bank refused: the waiting checkout is gone (kept: the deletion commits)."""

    keeps = True
    default_message = "Your bank did not confirm this payment. Nothing was charged."


# --- the access check and the visitor message (hot path) --------------------------------------------

@dataclass(frozen=True, slots=True)
class Visitor:
    token: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.email is None):
            raise InvalidRequest("Send exactly one of visitor_token and visitor_email.", field="visitor_token")


@dataclass(frozen=True, slots=True)
class PassView:
    id: str
    status: PassStatus
    credits_left: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Access:
    allowed: bool
    reason: Reason
    pass_: PassView | None
    org_id: str
    paid: bool = False  # the agent is Pay for Access (a message takes a pass credit)


_PASS_COLUMNS = (Pass.id, Pass.org_id, Pass.credits_left, Pass.expires_at, Pass.refunded_at, Pass.email_key)


def _pass_query(by_token: bool) -> Any:
    """The visitor's pass for this agent: the token's, or by email the one still usable that ends
    last (else the newest)."""
    query = select(*_PASS_COLUMNS).where(Pass.agent_id == bindparam("agent_id"))
    if by_token:
        return query.where(Pass.token_hash == bindparam("token_hash"))
    usable = and_(Pass.refunded_at.is_(None), Pass.credits_left > 0, Pass.expires_at > bindparam("at"))
    return (query.where(Pass.email_key == bindparam("email_key"))
            .order_by(case((usable, 0), else_=1), Pass.expires_at.desc(), Pass.created_at.desc()).limit(1))


def _access_statement(by_token: bool) -> Any:
    """``check_access``'s one read, built once with bind parameters (agent_id, and token_hash, or
    email_key and at): only its values change from call to call."""
    pass_ = _pass_query(by_token).subquery()
    # A restricted agent knows its visitor by the email sent, or by the email of the token's pass —
    # a pass on any agent of the organization (a buyer of one agent is a contact for the others).
    # (``correlate``: the outer query's agent, two levels up — not a second scan of every agent.)
    contact_key: Any = (
        select(Pass.email_key).where(Pass.token_hash == bindparam("token_hash"), Pass.org_id == Agent.org_id)
        .correlate(Agent).limit(1).scalar_subquery()) if by_token else bindparam("email_key", type_=Pass.email_key.type)
    return (
        select(Agent.org_id, Agent.access_mode, Agent.archived_at,
               select(func.count()).select_from(Subscription)
               .where(Subscription.org_id == Agent.org_id,
                      Subscription.status.in_([literal_column(f"'{status}'") for status in SUBSCRIBED]))
               .scalar_subquery().label("subscribed"),
               select(CreditAccount.plan_balance + CreditAccount.topup_balance)
               .where(CreditAccount.org_id == Agent.org_id).scalar_subquery().label("balance"),
               pass_.c.id.label("pass_id"), pass_.c.credits_left, pass_.c.expires_at, pass_.c.refunded_at,
               select(func.count()).select_from(Contact)
               .where(Contact.org_id == Agent.org_id, Contact.email_key == contact_key)
               .scalar_subquery().label("is_contact"))
        .outerjoin(pass_, pass_.c.org_id == Agent.org_id)
        .where(Agent.id == bindparam("agent_id")))


_ACCESS = {by_token: _access_statement(by_token) for by_token in (True, False)}


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A Core statement compiled once for psycopg (``%(name)s`` placeholders) with its fixed values."""

    sql: str
    fixed: dict[str, Any]

    @classmethod
    def of(cls, statement: Any) -> _Prepared:
        compiled = statement.compile(dialect=postgresql.psycopg.dialect())  # type: ignore[no-untyped-call]
        assert "POSTCOMPILE" not in str(compiled), "an expanding IN: give its values as literal columns"
        return cls(str(compiled), {k: v for k, v in compiled.params.items() if not compiled.binds[k].required})


_ACCESS_PG = {by_token: _Prepared.of(statement) for by_token, statement in _ACCESS.items()}


def _read_access(db: Session, by_token: bool, values: dict[str, Any]) -> Any:
    """``check_access``'s row. On PostgreSQL the statement goes as compiled once (psycopg prepares it
    on the connection after a few uses): compiling and processing it as Core for each call cost three
    to four times the round trip, on the path of every visitor message."""
    conn = db.connection()
    if conn.dialect.name != "postgresql":
        return conn.execute(_ACCESS[by_token], values).one_or_none()
    prepared = _ACCESS_PG[by_token]
    return conn.exec_driver_sql(prepared.sql, {**prepared.fixed, **values}).one_or_none()


def check_access(db: Session, *, env: Env, agent_id: str, visitor: Visitor, at: datetime) -> Access:
    """May this visitor send a message to this agent now? Never raises for an unknown agent, token or
    email: the answer is ``allowed: false`` with the reason (SPEC §13). One read."""
    message_cost = env.catalog.credits.costs["message"]
    values: dict[str, Any] = {"agent_id": agent_id}
    if visitor.token is not None:
        values["token_hash"] = token_hash(visitor.token)
    else:
        values.update(email_key=email_key(visitor.email or ""), at=at)
    row = _read_access(db, visitor.token is not None, values)
    return access_of(row, at=at, message_cost=message_cost)


def access_of(row: Any, *, at: datetime, message_cost: int) -> Access:
    """The answer from the access check's one row (this module's statement, or the fast lane's with the
    same columns: org_id, access_mode, archived_at, subscribed, balance, the pass's pass_id,
    credits_left, expires_at and refunded_at, and is_contact); None, or no org_id: no such agent."""
    if row is None or row.org_id is None or row.archived_at is not None:
        return Access(False, "agent_not_public", None, (row.org_id or "") if row is not None else "")
    view = None
    if row.pass_id is not None:
        view = PassView(row.pass_id, status_of(row, at), row.credits_left, row.expires_at.astimezone(UTC))
    reason: Reason = "none"
    if row.access_mode == "restricted" and not row.is_contact:
        reason = "not_a_contact"
    elif row.access_mode == "paid":
        if not row.subscribed:
            reason = "agent_not_public"
        elif view is None or view.status == "refunded":
            reason = "no_pass"
        elif view.status == "expired":
            reason = "expired"
        elif view.status == "used_up":
            reason = "credits_used"
    if reason == "none" and (row.balance or 0) < message_cost:
        reason = "org_out_of_credits"
    return Access(reason == "none", reason, view, row.org_id, paid=row.access_mode == "paid")


@dataclass(frozen=True, slots=True)
class Message:
    spent: Spent
    pass_: PassView | None


def visitor_message(db: Session, *, env: Env, agent_id: str, visitor: Visitor, reference: str,
                    model: str, at: datetime, wall_now: datetime) -> Message:
    """A visitor's message: the access check, then — in this one transaction — the organization's
    credits spent (``services.spend``, the same ``reference`` rule) and, on a paid agent, one of the
    pass's message credits, the pass row locked first so concurrent messages on one pass queue and
    none takes a credit it does not have. Refused with ``access_denied`` (``reason``) or the
    organization's ``insufficient_credits``, having changed nothing. A repeated reference answers
    the first result and takes nothing."""
    access = check_access(db, env=env, agent_id=agent_id, visitor=visitor, at=at)
    view = access.pass_
    paid = view is not None and access.reason in ("none", "org_out_of_credits") and access.paid
    if paid and view is not None:
        # Lock the pass, then decide on its newest state (another message may have taken the last credit).
        locked = db.execute(select(*_PASS_COLUMNS).where(Pass.id == view.id).with_for_update()).one()
        view = PassView(view.id, status_of(locked, at), locked.credits_left, locked.expires_at)
    request = SpendRequest(activity="message", reference=reference, model=model,  # type: ignore[arg-type]
                           agent_id=agent_id)
    reason = access.reason
    if paid and view is not None and view.status != "active":
        reason = {"expired": "expired", "used_up": "credits_used"}.get(view.status, "no_pass")  # type: ignore[assignment]
    refused = reason not in ("none", "org_out_of_credits")
    if refused and not (access.org_id and _prior_spend(db, access.org_id, reference)):
        raise AccessDenied(_DENIED[reason], reason=reason)
    # Allowed, or a repeat of a message answered before (the spend replays it, taking nothing).
    try:
        done = spend(db.connection(), terms=env.catalog.credits, org_id=access.org_id, request=request, at=at,
                     wall_now=wall_now)
    except IntegrityError as exc:  # the same reference committed by a message on another pass meanwhile
        raise Conflict("This reference is being used by another message; send it again.") from exc
    if paid and view is not None and not done.replayed:
        db.execute(update(Pass).where(Pass.id == view.id).values(credits_left=Pass.credits_left - 1))
        view = PassView(view.id, "used_up" if view.credits_left - 1 <= 0 else "active", view.credits_left - 1,
                        view.expires_at)
    return Message(done, view)


_DENIED: dict[str, str] = {
    "agent_not_public": "This agent is not open to visitors.",
    "not_a_contact": "This agent is only for the organization's contacts.",
    "no_pass": "This visitor has no pass for this agent.",
    "expired": "This visitor's pass has expired.",
    "credits_used": "This visitor's pass has no messages left.",
}


def _prior_spend(db: Session, org_id: str, reference: str) -> bool:
    return db.scalar(select(CreditEntry.id).where(CreditEntry.org_id == org_id,
                                                  CreditEntry.reference == reference)) is not None


# --- refunds and revenue ------------------------------------------------------------------------------

def refund_pass(db: Session, *, env: Env, actor: Actor, pass_id: str, at: datetime) -> Pass:
    """The Owner gives a pass's whole payment back through the gateway (never more than was paid):
    the pass is revoked at once and leaves the revenue. A pass already refunded is answered as it is."""
    if not actor.is_owner:
        raise OwnerOnly.for_("Refunds")
    locked_org(db, actor.org_id)
    sold = db.scalar(select(Pass).where(Pass.org_id == actor.org_id, Pass.id == pass_id))
    if sold is None:
        raise NotFound("No such pass.")
    if sold.refunded_at is not None:
        return sold
    made = env.gateway.refund(reference=sold.gateway_reference, amount=sold.price, refunded_before=0,
                              idempotency_key=f"slotwise-pass-refund-{sold.id}")
    sold.refunded_at, sold.refund_reference = at, made.reference
    db.flush()
    events.emit(db, org_id=sold.org_id, type="pass.refunded", at=at, data={
        "pass": sold.id, "agent": sold.agent_id, "amount": sold.price, "currency": sold.currency})
    audit.record(db, org_id=sold.org_id, by=audit.by_user(db, actor), kind="pass.refunded", at=at,
                 subject_id=sold.id, amount=sold.price, currency=sold.currency,
                 before={"status": "active", "credits_left": sold.credits_left}, after={"status": "refunded"})
    return sold


@dataclass(frozen=True, slots=True)
class Totals:
    currency: str
    gross: int
    platform_fee: int
    net: int
    sales: int
    refunded: int  # what was given back (not in gross, fee or net)


@dataclass(frozen=True, slots=True)
class Revenue:
    totals: list[Totals]  # every sale not refunded, per currency
    this_month: list[Totals]  # since the first day of this calendar month (UTC)
    active_subscribers: int  # visitors holding a usable pass now


def revenue(db: Session, *, actor: Actor, at: datetime, agent_id: str | None = None) -> Revenue:
    require_reader(actor)
    where = [Pass.org_id == actor.org_id]
    if agent_id is not None:
        where.append(Pass.agent_id == agent_id)
    month = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def totals(*extra: Any) -> list[Totals]:
        kept = Pass.refunded_at.is_(None)
        rows = db.execute(
            select(Pass.currency,
                   func.coalesce(func.sum(case((kept, Pass.price), else_=0)), 0),
                   func.coalesce(func.sum(case((kept, Pass.platform_fee), else_=0)), 0),
                   func.coalesce(func.sum(case((kept, Pass.net), else_=0)), 0),
                   func.count(case((kept, 1))),
                   func.coalesce(func.sum(case((kept, 0), else_=Pass.price)), 0))
            .where(*where, *extra).group_by(Pass.currency).order_by(Pass.currency)).all()
        return [Totals(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]

    active = db.scalar(select(func.count(func.distinct(Pass.email_key))).where(
        *where, Pass.refunded_at.is_(None), Pass.credits_left > 0, Pass.expires_at > at)) or 0
    return Revenue(totals(), totals(Pass.created_at >= month), int(active))

