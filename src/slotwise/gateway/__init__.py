"""Card gateways: the interface slotwise charges through, the embedded sandbox and Stripe
(``stripe_gateway``, imported only when chosen by ``make_gateway``)."""

from slotwise.gateway.base import (
    CardGateway,
    CardSetup,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    Customer,
    CustomerAction,
    ProcessorCharge,
    RefundResult,
    StoredCard,
    Verdict,
    WebhookEvent,
    charge_key,
)
from slotwise.gateway.errors import CardDeclined, GatewayError, GatewayUnavailable, RefundRefused, WebhookRejected
from slotwise.gateway.factory import GatewayNotConfigured, make_gateway
from slotwise.gateway.sandbox import SandboxGateway

__all__ = [
    "CardDeclined", "CardGateway", "CardSetup", "ChargeOutcome", "ChargeRequest", "ChargeResult", "Customer",
    "CustomerAction", "GatewayError", "GatewayNotConfigured", "GatewayUnavailable", "ProcessorCharge", "RefundRefused",
    "RefundResult", "SandboxGateway", "StoredCard", "Verdict", "WebhookEvent", "WebhookRejected", "charge_key",
    "make_gateway",
]
