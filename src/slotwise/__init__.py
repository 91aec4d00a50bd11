"""slotwise: the account-and-billing core of an AI agent platform."""

__version__ = "0.1.0"
