"""What a gateway refuses with: ``SlotwiseError`` classes, so the API renders them in its one handler."""

from __future__ import annotations

from slotwise.errors import PaymentFailed, SlotwiseError


class CardDeclined(PaymentFailed):
    """The processor refused the card when it was attached (details: ``decline_code`` if it says)."""

    code = "card_declined"


class GatewayUnavailable(SlotwiseError):
    """The processor could not be reached, was rate limiting or failed (5xx): try again later."""

    code, status, transient = "gateway_unavailable", 503, True
    default_message = "The payment processor is not answering. Please try again in a moment."


class GatewayError(SlotwiseError):
    """The processor refused a request slotwise should not have made (configuration, a bad id)."""

    code, status = "gateway_error", 502
    default_message = "The payment processor refused the request."


class RefundRefused(SlotwiseError):
    code, status = "refund_refused", 409
    default_message = "That refund is more than what is left of the payment."


class WebhookRejected(SlotwiseError):
    code, status = "webhook_rejected", 400
    default_message = "The webhook signature could not be verified."
