"""localstripe (a fake Stripe server, GPL-3, a dev dependency only) on a free loopback port, for tests.

``LocalStripe`` starts this file as a subprocess, waits until it answers and stops it; the pytest
fixture ``localstripe`` (session scope) wraps it — import it into a conftest to reuse it. Run directly
(``python tests/localstripe_server.py --port N``) this file serves localstripe with its gaps closed,
so the official ``stripe`` library sees what live Stripe would answer:

* ``Idempotency-Key`` is ignored by localstripe: here a POST with a key seen before replays the first
  answer (and a different body under the same key is a 400 ``idempotency_error``), like Stripe;
* ``decline_code`` is never set: added from the test card's number (0002 ``generic_decline``, 9995
  ``insufficient_funds``, …), and a declined PaymentIntent's error carries the ``payment_intent``;
* ``allowed_payment_method_types`` (this API version's name) is taken as ``payment_method_types``;
* ``GET /v1/payment_intents?customer=…`` or ``created[gte]=…`` is refused (400 Unexpected): here they
  filter by customer and by creation time;
* its store is pickled to the fixed path ``/tmp/localstripe.pickle`` after every write, shared by every
  instance on the machine: here nothing is written (each instance starts empty).

Still not like Stripe (the product copes or the tests do not rely on it): no Checkout Sessions, no
Search API, ``requires_action`` (not ``authentication_required``) for 3155/3184 off-session, declines of
0002/9995 at attach (use 0341 for a decline at charge), refunds may exceed the charge (the gateway
checks), ``description``/``setup_future_usage``/``return_url``/``error_on_requires_action`` refused, no
``amount_received``. Webhooks are registered with ``POST /_config/webhooks/{id}`` {url, secret} and
signed like Stripe's; a stand-in Stripe.js is served at ``/js.stripe.com/v3/`` (its 3-D Secure modal
calls ``POST /v1/payment_intents/{id}/_authenticate`` {client_secret, success, key: pk_…}); it lacks
``createPaymentMethod``, which is added here (``POST /v1/payment_methods`` with the publishable key).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

DECLINE_CODES = {
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
    "4000000000000341": "generic_decline",
}


class LocalStripe:
    """A running localstripe: ``api_base`` for ``SLOTWISE_STRIPE_API_BASE``, the test keys, and a
    few calls that stand in for the customer's browser (what Stripe.js would send)."""

    secret_key = "sk_test_slotwise"
    publishable_key = "pk_test_slotwise"

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalStripe:
        for _attempt in range(3):  # a free port can be taken between finding it and binding it
            self.port = free_port()
            self._process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--port", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait(timeout):
                return self
            self.stop()
        raise RuntimeError("localstripe did not start")

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.api_base + "/js.stripe.com/v3/", timeout=1) as answer:
                    if answer.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a browser (Stripe.js) or the operator would do --------------------------------
    def request(self, method: str, path: str, form: dict[str, str] | None = None, *,
                key: str | None = None) -> tuple[int, Any]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.api_base + path, data=data, method=method)
        if key is not None:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                body = answer.read()
                return answer.status, json.loads(body) if body else None
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def card_payment_method(self, number: str) -> str:
        """A ``pm_…`` for a test card, as ``stripe.createPaymentMethod`` returns it to a page."""
        status, body = self.request("POST", "/v1/payment_methods", {
            "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034",
            "card[cvc]": "123"}, key=self.secret_key)
        assert status == 200, body
        return str(body["id"])

    def authenticate(self, intent_id: str, client_secret: str, *, success: bool) -> None:
        """The customer passing (or failing) 3-D Secure in the stand-in Stripe.js's modal."""
        status, body = self.request("POST", f"/v1/payment_intents/{intent_id}/_authenticate", {
            "client_secret": client_secret, "success": "true" if success else "false",
            "key": self.publishable_key})
        assert status == 200, body

    def register_webhook(self, hook_id: str, url: str, secret: str) -> None:
        status, _ = self.request("POST", f"/_config/webhooks/{hook_id}", {"url": url, "secret": secret})
        assert status == 200

    def payment_intents(self) -> list[dict[str, Any]]:
        status, body = self.request("GET", "/v1/payment_intents?limit=1000", key=self.secret_key)
        assert status == 200, body
        return list(body["data"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    with LocalStripe() as server:
        yield server


# -- the server side: localstripe with its gaps closed (runs in the subprocess) -------------------
def _patch_localstripe() -> Any:  # pragma: no cover - runs in the subprocess
    from aiohttp import web
    from localstripe import resources as r
    from localstripe.errors import UserError
    from localstripe.server import app

    r.Store.dump_to_disk = lambda self: None  # no shared /tmp/localstripe.pickle

    def renaming(cls: Any) -> None:
        original = cls.__init__

        def init(self: Any, *args: Any, allowed_payment_method_types: Any = None, **kwargs: Any) -> None:
            if allowed_payment_method_types is not None:
                kwargs["payment_method_types"] = allowed_payment_method_types
            original(self, *args, **kwargs)

        cls.__init__ = init

    renaming(r.PaymentIntent)
    renaming(r.SetupIntent)

    list_all = r.PaymentIntent._api_list_all.__func__

    def list_payment_intents(cls: Any, url: str, customer: Any = None, created: Any = None, **kwargs: Any) -> Any:
        found = list_all(cls, url, **kwargs)
        if customer is not None:
            found._list = [pi for pi in found._list if pi.customer == customer]
        if isinstance(created, dict) and "gte" in created:
            found._list = [pi for pi in found._list if pi.created >= int(created["gte"])]
        return found

    r.PaymentIntent._api_list_all = classmethod(list_payment_intents)

    def with_decline_code(error: UserError, card_number: str | None) -> UserError:
        details = error.body["error"]
        if error.code == 402:
            details["type"] = "card_error"
            if card_number in DECLINE_CODES:
                details.setdefault("decline_code", DECLINE_CODES[card_number])
        return error

    last_error = r.PaymentIntent.last_payment_error.fget

    def last_payment_error(self: Any) -> Any:
        error = last_error(self)
        pm = r.store.get("payment_method:" + str(self.payment_method))
        if error and error.get("code") == "card_declined" and getattr(pm, "_card_number", None) in DECLINE_CODES:
            error["decline_code"] = DECLINE_CODES[pm._card_number]
        return error

    r.PaymentIntent.last_payment_error = property(last_payment_error)

    def raise_failure(self: Any) -> None:
        pm = r.store.get("payment_method:" + str(self.payment_method))
        details: dict[str, Any] = {"code": self.failure_code, "charge": self.id}
        if self.payment_intent:
            details["payment_intent"] = r.store["payment_intent:" + self.payment_intent]._export()
        raise with_decline_code(UserError(402, self.failure_message, details), getattr(pm, "_card_number", None))

    r.Charge._raise_failure = raise_failure

    replays: dict[str, tuple[str, int, bytes]] = {}
    locks: dict[str, asyncio.Lock] = {}

    @web.middleware
    async def idempotency(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = f"{request.headers.get('Authorization', '')} {key}"
        digest = hashlib.sha256(request.path.encode() + b"?" + await request.read()).hexdigest()
        async with locks.setdefault(scope, asyncio.Lock()):
            if scope in replays:
                seen, status, body = replays[scope]
                if seen != digest:
                    return web.json_response({"error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters."}},
                        status=400)
                return web.Response(body=body, status=status, content_type="application/json",
                                    headers={"Idempotent-Replayed": "true"})
            response = await handler(request)
            if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
                replays[scope] = (digest, response.status, bytes(response.body))  # type: ignore[arg-type]
            return response

    @web.middleware
    async def attach_declines(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        # The attach route holds the original function (bound at import), so its answer is amended here.
        response = await handler(request)
        parts = request.path.strip("/").split("/")
        if (response.status == 402 and isinstance(response, web.Response) and response.body is not None
                and len(parts) == 4 and parts[:2] == ["v1", "payment_methods"] and parts[3] == "attach"):
            pm = r.store.get("payment_method:" + parts[2])
            error = with_decline_code(UserError(402, None, json.loads(bytes(response.body))["error"]),  # type: ignore[arg-type]
                                      getattr(pm, "_card_number", None))
            return web.json_response(error.body, status=402)
        return response

    @web.middleware
    async def create_payment_method(request: web.Request,
                                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                    ) -> web.StreamResponse:
        # Stripe.js's createPaymentMethod: the stand-in script gets it, and the route takes the
        # publishable key in the body, as Stripe does for what the browser sends.
        if request.method == "GET" and request.path == "/js.stripe.com/v3/":
            response = await handler(request)
            assert isinstance(response, web.Response) and response.text is not None
            return web.Response(text=response.text + CREATE_PAYMENT_METHOD_JS, content_type="application/javascript")
        browser = "Authorization" not in request.headers
        if request.method == "POST" and request.path == "/v1/payment_methods" and browser:
            data = json.loads(await request.text() or "{}")
            if not str(data.pop("key", "")).startswith("pk_"):
                return web.json_response({"error": {"type": "invalid_request_error", "message": "No API key"}},
                                         status=401)
            try:
                made = r.PaymentMethod._api_create(**data)
            except UserError as error:
                return error.to_response()  # type: ignore[no-any-return]
            return web.json_response(made._export())
        return await handler(request)

    app.middlewares.insert(0, idempotency)
    app.middlewares.insert(1, attach_declines)
    app.middlewares.insert(2, create_payment_method)
    return app


# Appended to the stand-in Stripe.js: ``stripe.createPaymentMethod({type, card: element, billing_details})``.
CREATE_PAYMENT_METHOD_JS = """
Stripe = ((base) => (apiKey) => {
  const stripe = base(apiKey);
  stripe.createPaymentMethod = async ({ type, card, billing_details }) => {
    console.log('localstripe: Stripe().createPaymentMethod()');
    const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/payment_methods`, {
      method: 'POST',
      body: JSON.stringify({ key: apiKey, type, card: card.value.card, billing_details }),
    });
    const body = await response.json().catch(() => ({}));
    return response.status !== 200 || body.error ? { error: body.error } : { paymentMethod: body };
  };
  return stripe;
})(Stripe);
"""


def main() -> None:  # pragma: no cover - runs in the subprocess
    from aiohttp import web

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(_patch_localstripe(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
