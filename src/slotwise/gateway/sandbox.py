"""The embedded sandbox gateway, following the well-known test card numbers.

``4242 4242 4242 4242`` succeeds, ``4000 0000 0000 0002`` is declined and ``4000 0000 0000 9995``
is declined for insufficient funds; any other number that passes the Luhn check succeeds. The
full number is never kept: the token records only how the sandbox will answer.
"""

from __future__ import annotations

import hashlib
import secrets

from slotwise.errors import InvalidRequest
from slotwise.gateway.base import ChargeResult, StoredCard

DECLINES = {
    "4000000000000002": ("card_declined", "Your card was declined."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
}


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


class SandboxGateway:
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
        parts = token.split(":")
        behaviour = parts[1] if len(parts) == 3 and parts[0] == "sandbox" else "card_declined"
        if behaviour == "ok":
            return ChargeResult(True, reference)
        message = next((m for code, m in DECLINES.values() if code == behaviour), "Declined.")
        return ChargeResult(False, reference, behaviour, message)
