"""Choosing a gateway from SLOTWISE_* settings, and the start-up errors when it cannot work."""

from __future__ import annotations

import pytest

from slotwise.config import Settings
from slotwise.gateway import SandboxGateway, make_gateway
from slotwise.gateway.stripe_gateway import StripeGateway


def test_the_sandbox_is_the_default() -> None:
    assert isinstance(make_gateway(Settings.from_env({})), SandboxGateway)


def test_stripe_is_chosen_with_its_keys_and_never_shows_the_secret() -> None:
    settings = Settings.from_env({"SLOTWISE_GATEWAY": "stripe", "SLOTWISE_STRIPE_SECRET_KEY": "sk_test_hidden",
                                  "SLOTWISE_STRIPE_PUBLISHABLE_KEY": "pk_test_shown",
                                  "SLOTWISE_STRIPE_WEBHOOK_SECRET": "whsec_hidden",
                                  "SLOTWISE_STRIPE_API_BASE": "http://127.0.0.1:1"})
    gateway = make_gateway(settings)
    assert isinstance(gateway, StripeGateway)
    for text in (repr(settings), repr(gateway)):
        assert "sk_test_hidden" not in text and "whsec_hidden" not in text


@pytest.mark.parametrize(("env", "message"), [
    ({"SLOTWISE_GATEWAY": "stripe"}, "SLOTWISE_STRIPE_SECRET_KEY"),
    ({"SLOTWISE_GATEWAY": "paypal"}, "SLOTWISE_GATEWAY"),
])
def test_a_gateway_that_cannot_work_stops_the_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
