"""The embedded sandbox gateway, following the well-known test card numbers. No network, and no
state: every answer is a pure function of what it is asked, so any process answers the same.

Cards attached the processor's way (``attach_payment_method``), as Stripe answers them:
``4242 4242 4242 4242`` (and any other Luhn-valid number) is charged; ``4000 0000 0000 0002`` is
declined at attach (``generic_decline``), ``4000 0000 0000 9995`` too (``insufficient_funds``);
``4000 0000 0000 0341`` attaches and is declined at charge; ``4000 0025 0000 3155`` (and 3184)
needs the customer to verify each charge (SCA).

Cards stored the original way (``store_card``) keep the original answers: 0002 and 9995 are
stored and declined at charge, with ``failure_code`` ``card_declined`` / ``insufficient_funds``.

The full number is never kept: the token records only how the sandbox will answer, and a payment's
reference records its amount, currency and state (``sbxpi_2500_usd_paid_<key digest>``), which is
what lets a stateless sandbox complete a verification and cap a refund.

The one thing it remembers is this process's paid charges (``recent_charges``, a bounded window), so
reconciliation has the same input as with a real processor; they die with the process, as would
anything a sandbox "charged" — no money ever moved.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime

from slotwise.clock import wall_now
from slotwise.errors import InvalidRequest
from slotwise.gateway import webhooks
from slotwise.gateway.base import (
    CardSetup,
    ChargeRequest,
    ChargeResult,
    Customer,
    CustomerAction,
    ProcessorCharge,
    RefundResult,
    StoredCard,
    Verdict,
    WebhookEvent,
)
from slotwise.gateway.errors import CardDeclined, GatewayError, RefundRefused, WebhookRejected

DECLINES = {
    "4000000000000002": ("card_declined", "Your card was declined."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
}
# attach_payment_method: the issuer's reason for the cards refused at attach, as Stripe reports it
ATTACH_DECLINES = {"4000000000000002": "generic_decline", "4000000000009995": "insufficient_funds"}
CHARGE_DECLINES = {"4000000000000341"}
NEEDS_AUTHENTICATION = {"4000002500003155", "4000002760003184"}

DECLINED_MESSAGE = "Your card was declined."
REMEMBERED_CHARGES = 10_000  # the paid charges ``recent_charges`` can answer with, newest kept


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "card"


def normalize_card_number(card_number: str) -> str:
    digits = card_number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19 or not luhn_valid(digits):
        raise InvalidRequest("That card number is not valid.", field="card_number")
    return digits


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _behaviour(token: str) -> str:
    parts = token.split(":")
    # An unknown token is declined, never charged: the sandbox cannot know what card it stands for.
    return parts[1] if len(parts) == 3 and parts[0] == "sandbox" else "card_declined"


def intent_id(*, amount: int, currency: str, state: str, idempotency_key: str) -> str:
    """A sandbox payment's id, carrying what the sandbox needs later (≤ 64 characters)."""
    return f"sbxpi_{amount}_{currency}_{state}_{_digest(idempotency_key, 16)}"


def parse_intent_id(reference: str) -> tuple[int, str, str, str]:
    """``(amount, currency, state, digest)`` of an id made by ``intent_id``."""
    parts = reference.split("_")
    if len(parts) != 5 or parts[0] != "sbxpi" or not parts[1].isdigit():
        raise GatewayError("That is not a sandbox payment.", reference=reference)
    return int(parts[1]), parts[2], parts[3], parts[4]


class SandboxGateway:
    """``webhook_secret``: the sandbox signs its own events Stripe's way (``sign_event``) and refuses
    every webhook without one. ``outages``: this many next charges answer retryable without
    charging — the fault a real processor's network has, for tests (the default never fails)."""

    name = "sandbox"

    def __init__(self, *, webhook_secret: str | None = None, outages: int = 0) -> None:
        self._webhook_secret = webhook_secret
        self._outages = outages
        self._lock = threading.Lock()
        self._paid: deque[ProcessorCharge] = deque(maxlen=REMEMBERED_CHARGES)
        self._waiting: dict[str, ChargeRequest] = {}  # SCA intents of this process, until verified

    # -- customers and cards ---------------------------------------------------------------
    def create_customer(self, *, reference: str, email: str | None = None, name: str | None = None) -> Customer:
        return Customer(id="sbxcus_" + _digest(reference, 20))

    def attach_payment_method(self, *, customer_id: str, payment_method: str) -> StoredCard:
        digits = normalize_card_number(payment_method)
        if digits in ATTACH_DECLINES:
            reason = ATTACH_DECLINES[digits]
            message = DECLINES[digits][1]
            raise CardDeclined(message, decline_code=reason)
        behaviour = "declined" if digits in CHARGE_DECLINES else "sca" if digits in NEEDS_AUTHENTICATION else "ok"
        return StoredCard(token=f"sandbox:{behaviour}:{secrets.token_hex(6)}", brand=card_brand(digits),
                          last4=digits[-4:])

    def start_card_setup(self, *, customer_id: str) -> CardSetup:
        setup_id = "sbxseti_" + secrets.token_hex(8)
        return CardSetup(intent_id=setup_id, client_secret=f"{setup_id}_secret", publishable_key=None, js_url=None)

    # -- charges ---------------------------------------------------------------------------
    def charge_off_session(self, request: ChargeRequest) -> ChargeResult:
        with self._lock:
            if self._outages > 0:
                self._outages -= 1
                return ChargeResult.retry_later("processor_unavailable", "The sandbox is simulating an outage.")
        return self._answer(request, charging=True)

    def find_charge(self, request: ChargeRequest) -> ChargeResult:
        """The sandbox cannot tell a charge it made from one it was never asked for: it answers what
        that charge answered (the same reference, from the key). That is safe only because a sandbox
        charge moves no money; it is never None."""
        return self._answer(request, charging=False)

    def recent_charges(self, *, since: datetime) -> Iterator[ProcessorCharge]:
        with self._lock:
            remembered = list(self._paid)
        return iter([charge for charge in remembered if charge.created_at >= since])

    def _remembers(self, reference: str) -> bool:
        with self._lock:
            return any(charge.reference == reference for charge in self._paid)

    def _remember(self, reference: str, request: ChargeRequest) -> None:
        with self._lock:
            if all(charge.reference != reference for charge in self._paid):
                self._paid.append(ProcessorCharge(
                    reference=reference, amount=request.amount, currency=request.currency, created_at=wall_now(),
                    idempotency_key=request.idempotency_key, invoice_id=request.invoice_id, org_id=request.org_id))

    def _answer(self, request: ChargeRequest, *, charging: bool) -> ChargeResult:
        def pid(state: str) -> str:
            return intent_id(amount=request.amount, currency=request.currency, state=state,
                             idempotency_key=request.idempotency_key)

        behaviour = _behaviour(request.payment_method_id)
        if behaviour == "ok":
            if charging:
                self._remember(pid("paid"), request)
            return ChargeResult.paid(pid("paid"), amount=request.amount)
        if behaviour == "sca":
            sca = pid("sca")
            if charging:
                with self._lock:
                    self._waiting[sca] = request
                    if len(self._waiting) > REMEMBERED_CHARGES:
                        del self._waiting[next(iter(self._waiting))]
            return ChargeResult.action_required(CustomerAction(sca, f"{sca}_secret", request.payment_method_id))
        reason = "insufficient_funds" if behaviour == "insufficient_funds" else "generic_decline"
        message = DECLINES["4000000000009995"][1] if reason == "insufficient_funds" else DECLINED_MESSAGE
        return ChargeResult.declined(pid("declined"), "card_declined", message, decline_code=reason)

    def complete_verification(self, *, intent_id: str, verdict: Verdict | None = None) -> ChargeResult:
        amount, currency, state, digest = parse_intent_id(intent_id)
        paid_id = f"sbxpi_{amount}_{currency}_paid_{digest}"
        if state == "paid" or (state == "sca" and verdict == "approve"):
            with self._lock:
                asked = self._waiting.pop(intent_id, None)
            if asked is not None:
                self._remember(paid_id, asked)
            return ChargeResult.paid(paid_id, amount=amount)
        if state == "sca" and verdict is None and self._remembers(paid_id):
            return ChargeResult.paid(paid_id, amount=amount)  # approved earlier in this process
        if state == "sca" and verdict is None:
            return ChargeResult.action_required(CustomerAction(intent_id, f"{intent_id}_secret", None))
        if state == "sca":
            return ChargeResult.declined(intent_id, "payment_intent_authentication_failure",
                                         "The payment was not verified with your bank.")
        return ChargeResult.declined(intent_id, "card_declined", DECLINED_MESSAGE, decline_code="generic_decline")

    def refund(self, *, reference: str, amount: int, refunded_before: int, idempotency_key: str) -> RefundResult:
        paid, _, state, _ = parse_intent_id(reference)
        if state != "paid":
            raise RefundRefused("Nothing was paid on that payment.", reference=reference)
        if amount <= 0 or refunded_before < 0 or refunded_before + amount > paid:
            raise RefundRefused(refundable=max(paid - refunded_before, 0), amount=amount)
        return RefundResult(reference="sbxre_" + _digest(idempotency_key, 24), charge_reference=reference,
                            amount=amount)

    # -- webhooks --------------------------------------------------------------------------
    def sign_event(self, payload: bytes, *, timestamp: int | None = None) -> str:
        """The ``Stripe-Signature`` header for ``payload``, for the sandbox's own events and tests."""
        if self._webhook_secret is None:
            raise WebhookRejected("No webhook secret is configured.")
        stamp = int(wall_now().timestamp()) if timestamp is None else timestamp
        return webhooks.sign(payload, secret=self._webhook_secret, timestamp=stamp)

    def parse_webhook(self, *, payload: bytes, signature: str | None) -> WebhookEvent:
        if self._webhook_secret is None:
            raise WebhookRejected("No webhook secret is configured.")
        # The signature's timestamp is the sender's wall clock, never the (maybe simulated) billing clock.
        if not signature or not webhooks.verify(payload, signature, secret=self._webhook_secret,
                                                now=wall_now().timestamp()):
            raise WebhookRejected()
        return webhooks.event_from_payload(payload)

    # -- the original calls ----------------------------------------------------------------
    def store_card(self, card_number: str) -> StoredCard:
        digits = normalize_card_number(card_number)
        behaviour = DECLINES.get(digits, ("ok", ""))[0]
        return StoredCard(
            token=f"sandbox:{behaviour}:{secrets.token_hex(6)}",
            brand=card_brand(digits),
            last4=digits[-4:],
        )

    def charge(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        reference = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        behaviour = _behaviour(token)
        if behaviour == "ok":
            return ChargeResult(True, reference)
        if behaviour == "sca":
            return ChargeResult.action_required(CustomerAction(reference, f"{reference}_secret", token))
        if behaviour == "declined":
            return ChargeResult(False, reference, "card_declined", DECLINED_MESSAGE)
        message = next((m for code, m in DECLINES.values() if code == behaviour), "Declined.")
        return ChargeResult(False, reference, behaviour, message)
