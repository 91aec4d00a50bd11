"""What a card processor must do for slotwise: the values it answers with and the protocol every
gateway implements (the embedded sandbox and Stripe; both pass ``tests/gateway/test_contract.py``).

Invariants every gateway keeps:

* a card number never leaves the page it was typed on for a real processor: slotwise keeps the
  processor's customer and payment-method ids, the brand and the last four digits;
* the same idempotency key never charges (or refunds) twice, and a charge carries that key and the
  invoice and organization it pays in its metadata, so a crash between the processor charging and
  slotwise committing is reconciled by ``find_charge``;
* a charge answers exactly one of paid, declined, action required (SCA) or retryable;
* a refund never takes back more than was paid minus what was already refunded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

# What the sandbox's stand-in verification page answers; a real processor keeps the verification
# itself (the customer's browser talks to it), so its gateway ignores this.
Verdict = Literal["approve", "fail"]

METADATA_KEY = "slotwise_idempotency_key"
METADATA_INVOICE = "slotwise_invoice_id"
METADATA_ORG = "slotwise_org_id"


def charge_key(invoice_id: str, attempt: int) -> str:
    """The idempotency key of one attempt at an invoice: a retry of the *same* attempt (after a
    network error, a crash) reuses it and so can never charge twice; a new attempt (after the card
    was updated) gets a new one."""
    return f"slotwise-invoice-{invoice_id}-attempt-{attempt}"


class ChargeOutcome(StrEnum):
    PAID = "paid"
    DECLINED = "declined"
    ACTION_REQUIRED = "action_required"  # SCA / 3-D Secure: the customer must verify with their bank
    RETRYABLE = "retryable"  # network error, rate limit, processor 5xx: retry with the same key


@dataclass(frozen=True, slots=True)
class Customer:
    """The processor's customer for an organization (or, later, a paid-agent visitor)."""

    id: str


@dataclass(frozen=True, slots=True)
class StoredCard:
    """What slotwise keeps of a card: the processor's payment-method id (``token``), brand, last four."""

    token: str
    brand: str
    last4: str


@dataclass(frozen=True, slots=True)
class CardSetup:
    """What a browser page needs to collect a card straight into the processor.

    Stripe: load ``js_url``, ``Stripe(publishable_key)``, mount a card Element and call
    ``stripe.confirmCardSetup(client_secret, {payment_method: {card}})``; the ``pm_…`` id it returns
    is what ``attach_payment_method`` takes. Sandbox: ``publishable_key`` and ``js_url`` are None, the
    page is slotwise's own stand-in and posts a test card number instead.
    """

    intent_id: str
    client_secret: str
    publishable_key: str | None
    js_url: str | None


@dataclass(frozen=True, slots=True)
class CustomerAction:
    """A charge waiting for the customer (SCA). Stripe: the page calls
    ``stripe.confirmCardPayment(client_secret, {payment_method: payment_method_id})`` with the
    publishable key of ``CardSetup``; then slotwise calls ``complete_verification(intent_id)``."""

    intent_id: str
    client_secret: str
    payment_method_id: str | None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One off-session charge. ``idempotency_key`` comes from ``charge_key``; the invoice and the
    organization travel as metadata so the processor's record can be matched back to ours."""

    customer_id: str
    payment_method_id: str
    amount: int  # minor units
    currency: str  # ISO 4217, lower case
    idempotency_key: str
    invoice_id: str
    org_id: str

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a charge is for a positive amount; settle zero without the gateway")
        if len(self.currency) != 3 or self.currency != self.currency.lower():
            raise ValueError("currency is a 3-letter lower-case ISO code")

    def metadata(self) -> dict[str, str]:
        return {METADATA_KEY: self.idempotency_key, METADATA_INVOICE: self.invoice_id, METADATA_ORG: self.org_id}


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The answer to a charge: exactly one ``outcome``.

    The first four fields are the original shape, still built positionally by the services
    (``ChargeResult(False, "no_card", "no_payment_method", "…")``): anything not ``succeeded`` reads as
    a failure there, which is the safe reading of action required and retryable too (nothing is
    granted). ``reference`` is the processor's payment (Stripe: the PaymentIntent id).
    """

    succeeded: bool
    reference: str
    failure_code: str | None = None
    failure_message: str | None = None
    decline_code: str | None = None  # the issuer's reason (insufficient_funds, …) when the processor says
    action: CustomerAction | None = None
    retryable: bool = False
    amount: int | None = field(default=None, compare=False)  # what the processor charged, when it says

    def __post_init__(self) -> None:
        if self.succeeded and (self.failure_code or self.action or self.retryable):
            raise ValueError("a paid charge carries no failure, action or retry")
        if not self.succeeded and not self.failure_code:
            raise ValueError("a charge that did not succeed says why (failure_code)")
        if self.action is not None and self.retryable:
            raise ValueError("a charge is either waiting for the customer or retryable, not both")

    @property
    def outcome(self) -> ChargeOutcome:
        if self.succeeded:
            return ChargeOutcome.PAID
        if self.action is not None:
            return ChargeOutcome.ACTION_REQUIRED
        if self.retryable:
            return ChargeOutcome.RETRYABLE
        return ChargeOutcome.DECLINED

    @classmethod
    def paid(cls, reference: str, *, amount: int | None = None) -> ChargeResult:
        return cls(True, reference, amount=amount)

    @classmethod
    def declined(cls, reference: str, code: str, message: str, *, decline_code: str | None = None) -> ChargeResult:
        return cls(False, reference, code, message, decline_code=decline_code)

    @classmethod
    def action_required(cls, action: CustomerAction) -> ChargeResult:
        return cls(False, action.intent_id, "authentication_required",
                   "Your bank asks you to verify this payment.", action=action)

    @classmethod
    def retry_later(cls, code: str, message: str, *, reference: str = "") -> ChargeResult:
        return cls(False, reference, code, message, retryable=True)


@dataclass(frozen=True, slots=True)
class RefundResult:
    reference: str  # the processor's refund id
    charge_reference: str
    amount: int


@dataclass(frozen=True, slots=True)
class ProcessorCharge:
    """A payment the processor says it took for slotwise (it carries our metadata): what
    reconciliation matches against the charges slotwise recorded."""

    reference: str  # the processor's payment (Stripe: the PaymentIntent id)
    amount: int  # what was received, in minor units
    currency: str
    created_at: datetime  # the processor's (wall-clock) time of the payment
    idempotency_key: str
    invoice_id: str
    org_id: str


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A processor event whose signature was verified: ``id`` is unique per event (store it once)."""

    id: str
    type: str
    object_id: str | None
    data: Mapping[str, Any]  # the event's ``data.object``


class CardGateway(Protocol):
    """Everything slotwise asks of a card processor. Raises ``gateway.errors`` classes (rendered by
    the API's one error handler): ``CardDeclined``, ``GatewayUnavailable``, ``RefundRefused``,
    ``WebhookRejected``, ``GatewayError``."""

    name: str  # "sandbox" | "stripe"

    def create_customer(self, *, reference: str, email: str | None = None, name: str | None = None) -> Customer:
        """The processor's customer for ``reference`` (an organization or visitor id): the same
        reference returns the same customer, however often it is asked."""
        ...

    def attach_payment_method(self, *, customer_id: str, payment_method: str) -> StoredCard:
        """Attach ``payment_method`` (Stripe: a ``pm_…`` id from Stripe.js; sandbox: a test card
        number) to the customer. Raises ``CardDeclined`` when the card is refused at attach time."""
        ...

    def start_card_setup(self, *, customer_id: str) -> CardSetup:
        """What a page needs to collect a card for later off-session charges."""
        ...

    def charge_off_session(self, request: ChargeRequest) -> ChargeResult:
        """Charge a saved card without the customer present; never raises for a decline or an outage."""
        ...

    def complete_verification(self, *, intent_id: str, verdict: Verdict | None = None) -> ChargeResult:
        """Re-read a charge that answered action required. ``verdict`` is the sandbox page's answer;
        without it (and always with Stripe) this reports the processor's current state, which is
        still action required if the customer has not verified yet."""
        ...

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The charge made for ``request.idempotency_key``, or None if the processor never made one
        (reconciliation after a crash between the processor charging and slotwise committing)."""
        ...

    def recent_charges(self, *, since: datetime) -> Iterator[ProcessorCharge]:
        """Every payment that succeeded at the processor since ``since`` (wall clock) and carries
        slotwise's metadata, whatever slotwise recorded of it: reconciliation's input."""
        ...

    def refund(self, *, reference: str, amount: int, refunded_before: int, idempotency_key: str) -> RefundResult:
        """Refund ``amount`` of the paid charge ``reference``. ``refunded_before`` is what slotwise has
        recorded as refunded already; the gateway also counts what the processor knows and raises
        ``RefundRefused`` if the total would exceed what was paid."""
        ...

    def parse_webhook(self, *, payload: bytes, signature: str | None) -> WebhookEvent:
        """Verify ``signature`` (the ``Stripe-Signature`` header) against the raw body and parse it.
        Raises ``WebhookRejected`` for a bad or missing signature, or when no secret is configured."""
        ...

    # The original two calls, still used by the services until they move to the calls above.
    def store_card(self, card_number: str) -> StoredCard:
        """Validate and tokenize a card number (sandbox only); raise ``InvalidRequest`` if malformed."""
        ...

    def charge(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        """Charge ``amount`` minor units. The same ``idempotency_key`` never charges twice."""
        ...
