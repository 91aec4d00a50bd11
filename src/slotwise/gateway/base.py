"""What a card processor must do for slotwise. A Stripe adapter implements the same protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredCard:
    """What slotwise keeps of a card: the processor's token, the brand and the last four digits."""

    token: str
    brand: str
    last4: str


@dataclass(frozen=True, slots=True)
class ChargeResult:
    succeeded: bool
    reference: str
    failure_code: str | None = None
    failure_message: str | None = None


class CardGateway(Protocol):
    def store_card(self, card_number: str) -> StoredCard:
        """Validate and tokenize a card; raise ``InvalidRequest`` for a malformed number."""
        ...

    def charge(self, *, token: str, amount: int, currency: str, idempotency_key: str) -> ChargeResult:
        """Charge ``amount`` minor units. The same ``idempotency_key`` never charges twice."""
        ...
