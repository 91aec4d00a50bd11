"""Card gateways: the interface slotwise charges through, and the embedded sandbox."""

from slotwise.gateway.base import CardGateway, ChargeResult, StoredCard
from slotwise.gateway.sandbox import SandboxGateway

__all__ = ["CardGateway", "ChargeResult", "SandboxGateway", "StoredCard"]
