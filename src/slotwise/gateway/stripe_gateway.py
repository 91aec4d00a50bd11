"""The Stripe gateway, through the official ``stripe`` library (one ``StripeClient`` per gateway,
never the module's globals, so two gateways — or a test's fake Stripe — never share a key).

Charges are off-session PaymentIntents confirmed at creation, with
``allowed_payment_method_types=["card"]`` (this API version's name for ``payment_method_types``: no
redirect methods, so no ``return_url``), our idempotency key as the ``Idempotency-Key`` and as
metadata. ``max_network_retries`` makes the library retry network errors, 409s and 5xx itself with
the same key, so a retry can never charge twice; when it gives up the charge answers retryable.

SCA: Stripe answers an off-session charge that needs the customer either with a ``requires_action``
intent or with a ``CardError`` ``authentication_required`` carrying a ``requires_payment_method``
intent (live Stripe); both become action required. The page then calls
``stripe.confirmCardPayment(client_secret, {payment_method})`` and ``complete_verification``
re-reads the intent.

The secret key is never logged or put in an error: the library's own logging is left at its default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import PaymentIntentCreateParams

from slotwise.errors import InvalidRequest
from slotwise.gateway import webhooks
from slotwise.gateway.base import (
    METADATA_INVOICE,
    METADATA_KEY,
    METADATA_ORG,
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
from slotwise.gateway.errors import CardDeclined, GatewayError, GatewayUnavailable, RefundRefused, WebhookRejected

DEFAULT_JS_URL = "https://js.stripe.com/v3/"
NEEDS_CUSTOMER = {"authentication_required"}
REFUND_REFUSALS = {"charge_already_refunded", "amount_too_large"}


def _retryable(exc: stripe.StripeError) -> bool:
    """Network errors, rate limits, lock conflicts and Stripe's own 5xx: the same request may succeed."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = exc.http_status or 0
    return status == 409 or status >= 500


def _get(obj: Any, key: str) -> Any:
    """A field of a Stripe object or a plain dict (localstripe embeds objects where Stripe gives ids)."""
    if obj is None:
        return None
    try:
        return obj[key]
    except (KeyError, TypeError):
        return None


def _id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    found = _get(value, "id")
    return found if isinstance(found, str) else None


class StripeGateway:
    name = "stripe"

    def __init__(self, *, secret_key: str, publishable_key: str | None = None, webhook_secret: str | None = None,
                 api_base: str | None = None, max_network_retries: int = 2) -> None:
        if not secret_key:
            raise ValueError("the Stripe gateway needs a secret key")
        base = api_base.rstrip("/") if api_base else None
        self._client = stripe.StripeClient(
            secret_key, max_network_retries=max_network_retries,
            base_addresses={"api": base} if base else None,
        )
        self._publishable_key = publishable_key
        self._webhook_secret = webhook_secret
        # A local fake Stripe (localstripe) serves its stand-in Stripe.js at <base>/js.stripe.com/v3/.
        self._js_url = f"{base}/js.stripe.com/v3/" if base else DEFAULT_JS_URL

    def __repr__(self) -> str:  # never the key
        return f"StripeGateway(js_url={self._js_url!r})"

    # -- customers and cards ---------------------------------------------------------------
    def create_customer(self, *, reference: str, email: str | None = None, name: str | None = None) -> Customer:
        params: dict[str, Any] = {"metadata": {"slotwise_reference": reference}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        # Stripe keeps an idempotency key for 24 hours: a retried creation returns the same customer.
        customer = self._call(self._client.v1.customers.create, params,
                              {"idempotency_key": f"slotwise-customer-{reference}"})
        return Customer(id=customer.id)

    def attach_payment_method(self, *, customer_id: str, payment_method: str) -> StoredCard:
        if not payment_method.startswith("pm_"):
            # A card number must never be posted here: with Stripe it only goes to Stripe.js.
            raise InvalidRequest("Expected a Stripe payment method id (pm_…).", field="payment_method")
        try:
            pm = self._client.v1.payment_methods.attach(payment_method, {"customer": customer_id})
        except stripe.CardError as exc:
            raise CardDeclined(exc.user_message or "Your card was declined.",
                               decline_code=_get(exc.error, "decline_code")) from exc
        except stripe.InvalidRequestError as exc:
            raise InvalidRequest("That payment method cannot be used.", field="payment_method") from exc
        except stripe.StripeError as exc:
            raise self._failure(exc) from exc
        card = _get(pm, "card")
        return StoredCard(token=pm.id, brand=str(_get(card, "brand") or "card"), last4=str(_get(card, "last4") or ""))

    def start_card_setup(self, *, customer_id: str) -> CardSetup:
        setup = self._call(self._client.v1.setup_intents.create,
                           {"customer": customer_id, "usage": "off_session", "allowed_payment_method_types": ["card"]})
        return CardSetup(intent_id=setup.id, client_secret=str(setup.client_secret),
                         publishable_key=self._publishable_key, js_url=self._js_url)

    # -- charges ---------------------------------------------------------------------------
    def charge_off_session(self, request: ChargeRequest) -> ChargeResult:
        params: PaymentIntentCreateParams = {
            "amount": request.amount, "currency": request.currency, "customer": request.customer_id,
            "payment_method": request.payment_method_id, "allowed_payment_method_types": ["card"],
            "confirm": True, "off_session": True, "metadata": request.metadata(),
        }
        try:
            intent = self._client.v1.payment_intents.create(params, {"idempotency_key": request.idempotency_key})
        except stripe.CardError as exc:
            return self._card_error(exc)
        except stripe.StripeError as exc:
            if _retryable(exc):
                return ChargeResult.retry_later("processor_unavailable", "Stripe did not answer; retry, same key.")
            raise GatewayError("Stripe refused the charge.", code_from_stripe=exc.code) from exc
        return self._from_intent(intent)

    def complete_verification(self, *, intent_id: str, verdict: Verdict | None = None) -> ChargeResult:
        try:
            intent = self._client.v1.payment_intents.retrieve(intent_id)
        except stripe.StripeError as exc:
            if _retryable(exc):
                return ChargeResult.retry_later("processor_unavailable", "Stripe did not answer.", reference=intent_id)
            raise GatewayError("Stripe does not know that payment.", reference=intent_id) from exc
        return self._from_intent(intent)

    def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """Lists the customer's PaymentIntents and matches our key in their metadata. (The Search
        API is eventually consistent — a charge made a second ago may not show — so it is not used.)"""
        page = self._call(self._client.v1.payment_intents.list, {"customer": request.customer_id, "limit": 100})
        for intent in page.auto_paging_iter():
            if _get(_get(intent, "metadata"), METADATA_KEY) == request.idempotency_key:
                return self._from_intent(intent)
        return None

    def recent_charges(self, *, since: datetime) -> Iterator[ProcessorCharge]:
        """The account's PaymentIntents created since ``since`` (a page of 100 at a time, newest first),
        the succeeded ones carrying our metadata."""
        page = self._call(self._client.v1.payment_intents.list,
                          {"created": {"gte": int(since.timestamp())}, "limit": 100})
        for intent in page.auto_paging_iter():
            metadata = _get(intent, "metadata")
            key, invoice, org = (_get(metadata, name) for name in (METADATA_KEY, METADATA_INVOICE, METADATA_ORG))
            if _get(intent, "status") != "succeeded" or not (key and invoice and org):
                continue
            yield ProcessorCharge(
                reference=str(intent["id"]), amount=int(_get(intent, "amount_received") or intent["amount"]),
                currency=str(intent["currency"]), created_at=datetime.fromtimestamp(int(intent["created"]), UTC),
                idempotency_key=str(key), invoice_id=str(invoice), org_id=str(org))

    def refund(self, *, reference: str, amount: int, refunded_before: int, idempotency_key: str) -> RefundResult:
        intent = self._call(self._client.v1.payment_intents.retrieve, reference)
        if intent.status != "succeeded":
            raise RefundRefused("Nothing was paid on that payment.", reference=reference)
        paid = int(_get(intent, "amount_received") or intent.amount)
        refunds = self._call(self._client.v1.refunds.list, {"payment_intent": reference, "limit": 100})
        at_stripe = sum(int(r.amount) for r in refunds.auto_paging_iter() if r.status not in ("failed", "canceled"))
        # Count the larger of the two records: a refund slotwise forgot to record still counts.
        already = max(refunded_before, at_stripe)
        if amount <= 0 or already + amount > paid:
            raise RefundRefused(refundable=max(paid - already, 0), amount=amount)
        try:
            made = self._client.v1.refunds.create({"payment_intent": reference, "amount": amount},
                                                  {"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            if exc.code in REFUND_REFUSALS:
                raise RefundRefused(amount=amount) from exc
            raise GatewayError("Stripe refused the refund.", reference=reference) from exc
        except stripe.StripeError as exc:
            raise self._failure(exc) from exc
        return RefundResult(reference=made.id, charge_reference=reference, amount=int(made.amount))

    # -- webhooks --------------------------------------------------------------------------
    def parse_webhook(self, *, payload: bytes, signature: str | None) -> WebhookEvent:
        if not self._webhook_secret:
            raise WebhookRejected("No webhook secret is configured.")
        if not signature:
            raise WebhookRejected()
        try:
            stripe.Webhook.construct_event(payload.decode("utf-8"), signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError, json.JSONDecodeError) as exc:
            raise WebhookRejected() from exc
        return webhooks.event_from_payload(payload)

    # -- the original calls ----------------------------------------------------------------
    def store_card(self, card_number: str) -> StoredCard:
        raise InvalidRequest("With Stripe, the card is entered on Stripe's form; send its payment method id.",
                             field="card_number")

    def charge(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        raise GatewayError("The Stripe gateway charges a customer's payment method (charge_off_session).")

    # -- mapping ---------------------------------------------------------------------------
    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except stripe.StripeError as exc:
            raise self._failure(exc) from exc

    @staticmethod
    def _failure(exc: stripe.StripeError) -> GatewayUnavailable | GatewayError:
        if _retryable(exc):
            return GatewayUnavailable()
        return GatewayError(code_from_stripe=exc.code)

    def _card_error(self, exc: stripe.CardError) -> ChargeResult:
        error = exc.error
        intent = _get(error, "payment_intent")
        code = exc.code or "card_declined"
        if code in NEEDS_CUSTOMER and intent is not None:
            return self._needs_customer(intent)
        reference = _id(intent) or _id(_get(error, "charge")) or ""
        return ChargeResult.declined(reference, code, exc.user_message or "Your card was declined.",
                                     decline_code=_get(error, "decline_code"))

    @staticmethod
    def _needs_customer(intent: Any) -> ChargeResult:
        return ChargeResult.action_required(CustomerAction(
            intent_id=str(_get(intent, "id")), client_secret=str(_get(intent, "client_secret")),
            payment_method_id=_id(_get(intent, "payment_method")) or _id(_get(_get(intent, "last_payment_error"),
                                                                             "payment_method")),
        ))

    def _from_intent(self, intent: Any) -> ChargeResult:
        status = _get(intent, "status")
        if status == "succeeded":
            received = _get(intent, "amount_received") or _get(intent, "amount")
            return ChargeResult.paid(str(intent["id"]), amount=received)
        if status == "requires_action":
            return self._needs_customer(intent)
        if status == "processing":
            return ChargeResult.retry_later("processing", "The payment is still processing.", reference=intent["id"])
        error = _get(intent, "last_payment_error")
        code = _get(error, "code") or "payment_incomplete"
        if code in NEEDS_CUSTOMER:
            return self._needs_customer(intent)
        return ChargeResult.declined(str(intent["id"]), str(code),
                                     str(_get(error, "message") or "The payment did not go through."),
                                     decline_code=_get(error, "decline_code"))
