"""Every refusal slotwise makes: a class with a stable ``code``, an HTTP status and details.

Services raise these; the API renders them in one place as
``{"error": {"code": …, "message": …, **details}}``.
"""

from __future__ import annotations

from typing import Any

OWNER_ONLY_MESSAGE = "Add-ons are Owner Only. Ask your organization owner to make the change."


class SlotwiseError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be completed."
    transient = False  # True: the same request may succeed later, so it is never replayed as an answer
    # True: what the request wrote before this refusal commits (an invoice left open for the customer's
    # bank to verify); every other refusal rolls the request back whole.
    keeps = False

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}

    def headers(self) -> dict[str, str]:
        return {}


class Unauthenticated(SlotwiseError):
    code, status, default_message = "unauthenticated", 401, "A valid bearer token is required."


class OwnerOnly(SlotwiseError):
    code, status, default_message = "owner_only", 403, OWNER_ONLY_MESSAGE

    @classmethod
    def for_(cls, what: str) -> OwnerOnly:
        """The refusal naming what was refused: ``Plan changes are Owner Only. …``."""
        return cls(f"{what} are Owner Only. Ask your organization owner to make the change.")


class Forbidden(SlotwiseError):
    code, status, default_message = "forbidden", 403, "Your role does not allow this."


class NotFound(SlotwiseError):
    code, status, default_message = "not_found", 404, "Not found."


class InvalidRequest(SlotwiseError):
    code, status, default_message = "invalid_request", 422, "The request is not valid."


class SubscriptionRequired(SlotwiseError):
    code, status = "subscription_required", 409
    default_message = "Add-ons need an active subscription. Choose a paid plan first."


class AddonUnavailable(SlotwiseError):
    code, status, default_message = "addon_unavailable", 409, "This add-on is not offered on your plan."


class TeamsUnavailable(SlotwiseError):
    code, status = "teams_unavailable", 409
    default_message = "Upgrade to use team: your plan has no team option."


class LimitReached(SlotwiseError):
    code, status, default_message = "limit_reached", 409, "You have reached your plan's limit."


class BelowUsage(SlotwiseError):
    code, status, default_message = "below_usage", 409, "You can't remove slots below what you're using."


class PaymentFailed(SlotwiseError):
    # Transient: after the card is fixed, the same request (and the same Idempotency-Key) may succeed.
    code, status, transient = "payment_failed", 402, True
    default_message = "Your card was declined."


class PaymentActionRequired(SlotwiseError):
    """The customer's bank asks them to verify the payment (SCA / 3-D Secure). The invoice stays
    open (committed: ``keeps``) with a ``verify_url``; nothing is granted until it is verified."""

    code, status, keeps = "payment_action_required", 402, True
    default_message = "Payment needs verification: your bank asks you to confirm this payment."


class IdempotencyConflict(SlotwiseError):
    code, status = "idempotency_conflict", 409
    default_message = "This Idempotency-Key was already used with a different request."


class PlanUnavailable(SlotwiseError):
    code, status = "plan_unavailable", 409
    default_message = "This plan is not available for self-serve checkout. Contact sales."


class AlreadyOnPlan(SlotwiseError):
    """Checkout for the plan the organization is already on: there is nothing to pay or change."""

    code, status = "already_on_plan", 409
    default_message = "You are already on this plan."


class Conflict(SlotwiseError):
    code, status, default_message = "conflict", 409, "That conflicts with the current state."


class EmailTaken(SlotwiseError):
    code, status, default_message = "email_taken", 409, "A user with this email already exists."


class InvitationWithdrawn(SlotwiseError):
    code, status = "invitation_withdrawn", 409
    default_message = ("This email address already has an account, so the invitation can't be accepted and "
                       "was withdrawn. Ask for an invitation to another address.")


class ClockNotSimulated(SlotwiseError):
    code, status = "clock_not_simulated", 409
    default_message = "The clock can only be moved when SLOTWISE_CLOCK=simulated."


class PaymentRequired(SlotwiseError):
    code, status = "payment_required", 402
    default_message = "A renewal payment failed. Update your payment method to resume."


class RateLimited(SlotwiseError):
    code, status, transient = "rate_limited", 429, True
    default_message = "Too many changes to add-on slots in the last hour. Try again later."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.details.get("retry_after", 60))}


class InsufficientCredits(SlotwiseError):
    """SPEC §11: nothing is spent; ``cost`` and ``balance`` say by how much the spend fell short."""

    code, status, default_message = "insufficient_credits", 402, "Not enough credits to respond."
    VOICE_MESSAGE = "Insufficient credits to transcribe this recording."


class PaymentMethodRequired(SlotwiseError):
    code, status, default_message = "payment_method_required", 409, "A payment method is required."


class CancellationNotScheduled(SlotwiseError):
    code, status = "cancellation_not_scheduled", 409
    default_message = "Your subscription is not set to cancel, so there is nothing to resume."
