"""The harness the contract suite runs each gateway through: how a test customer gets a card
(a number for the sandbox, a ``pm_…`` from localstripe for Stripe), how the customer passes or fails
bank verification, how an outage is made, and how many charges the processor holds for a key."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from slotwise.gateway import CardGateway, CustomerAction, SandboxGateway, Verdict
from slotwise.gateway.stripe_gateway import StripeGateway
from tests.localstripe_server import LocalStripe, localstripe

__all__ = ["localstripe"]

WEBHOOK_SECRET = "whsec_contract"
_serial = itertools.count()


class Harness(Protocol):
    gateway: CardGateway

    def card(self, number: str) -> str: ...
    def verify(self, action: CustomerAction, *, success: bool) -> Verdict | None: ...
    def flaky(self, *, drops: int, retries: int) -> CardGateway: ...
    def charges_with_key(self, key: str) -> int | None: ...
    def without_webhook_secret(self) -> CardGateway: ...


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}-{threading.get_ident()}"


@dataclass
class SandboxHarness:
    gateway: SandboxGateway

    def card(self, number: str) -> str:
        return number

    def verify(self, action: CustomerAction, *, success: bool) -> Verdict | None:
        return "approve" if success else "fail"  # what its stand-in page posts back

    def flaky(self, *, drops: int, retries: int) -> CardGateway:
        return SandboxGateway(webhook_secret=WEBHOOK_SECRET, outages=drops)

    def charges_with_key(self, key: str) -> int | None:
        return None  # the sandbox keeps nothing to count

    def without_webhook_secret(self) -> CardGateway:
        return SandboxGateway()


@dataclass
class StripeHarness:
    gateway: StripeGateway
    server: LocalStripe

    def card(self, number: str) -> str:
        return self.server.card_payment_method(number)

    def verify(self, action: CustomerAction, *, success: bool) -> Verdict | None:
        self.server.authenticate(action.intent_id, action.client_secret, success=success)
        return None

    def flaky(self, *, drops: int, retries: int) -> CardGateway:
        proxy = DroppingProxy(self.server.port, drops=drops)
        return StripeGateway(secret_key=self.server.secret_key, api_base=proxy.base, max_network_retries=retries,
                             webhook_secret=WEBHOOK_SECRET)

    def charges_with_key(self, key: str) -> int | None:
        return sum(1 for pi in self.server.payment_intents()
                   if pi["metadata"].get("slotwise_idempotency_key") == key)

    def without_webhook_secret(self) -> CardGateway:
        return StripeGateway(secret_key=self.server.secret_key, api_base=self.server.api_base)


class DroppingProxy:
    """A loopback proxy to localstripe that forwards every request but, for the first ``drops``
    POSTs to ``/v1/payment_intents``, closes the connection instead of answering — the processor
    charged, slotwise never heard (a network failure after the fact)."""

    def __init__(self, upstream_port: int, *, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            request = _read_http(client)
            if not request:
                return
            head = request.split(b"\r\n", 1)[0]
            # Ask for one request per connection, so each one is read and answered on its own.
            request = request.replace(b"Connection: keep-alive", b"Connection: close")
            upstream.sendall(request)
            response = _read_http(upstream)
            if head.startswith(b"POST /v1/payment_intents ") and self.drops > 0:
                self.drops -= 1
                return  # the charge happened upstream; the answer is lost
            client.sendall(response.replace(b"Connection: keep-alive", b"Connection: close"))


def _read_http(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture(params=["sandbox", "stripe"])
def harness(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "sandbox":
        yield SandboxHarness(SandboxGateway(webhook_secret=WEBHOOK_SECRET))
        return
    server: LocalStripe = request.getfixturevalue("localstripe")
    yield StripeHarness(StripeGateway(secret_key=server.secret_key, publishable_key=server.publishable_key,
                                      webhook_secret=WEBHOOK_SECRET, api_base=server.api_base), server)
