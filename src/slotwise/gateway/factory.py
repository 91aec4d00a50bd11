"""The one place a gateway is chosen from settings (the composition root calls it)."""

from __future__ import annotations

from slotwise.config import Settings
from slotwise.gateway.base import CardGateway
from slotwise.gateway.sandbox import SandboxGateway


class GatewayNotConfigured(ValueError):
    """A start-up error: the settings name a gateway that cannot work as configured."""


def make_gateway(settings: Settings) -> CardGateway:
    """The sandbox (the default: no network, no keys, refuses webhooks) or Stripe. The Stripe module
    is imported only when chosen, so the sandbox never loads the ``stripe`` library."""
    if settings.gateway == "sandbox":
        return SandboxGateway()
    if settings.gateway != "stripe":
        raise GatewayNotConfigured("SLOTWISE_GATEWAY must be 'sandbox' or 'stripe'")
    if not settings.stripe_secret_key:
        raise GatewayNotConfigured("SLOTWISE_GATEWAY=stripe needs SLOTWISE_STRIPE_SECRET_KEY")
    from slotwise.gateway.stripe_gateway import StripeGateway

    return StripeGateway(secret_key=settings.stripe_secret_key, publishable_key=settings.stripe_publishable_key,
                         webhook_secret=settings.stripe_webhook_secret, api_base=settings.stripe_api_base)
