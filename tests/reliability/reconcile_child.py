"""A slotwise process that dies by SIGKILL right after the processor took a payment and before its
own transaction commits: the worst moment, for the reconciliation trial (``test_reconcile_crash.py``).

Run as ``python -m tests.reliability.reconcile_child {purchase|renewal} <pm_…>`` with a trial's
``SLOTWISE_*`` environment (the Stripe gateway against localstripe). It sets up an organization on
Pro with that card, prints it as one JSON line, then either adds slots (a purchase: the request dies
with the customer told nothing) or moves the simulated clock past the period's end (the billing run
dies mid-renewal — the renewal of any organization due, an earlier trial's too). The last line,
``{"killed_after": …, "key": …, "org": …}``, names the payment it died after.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid

from fastapi.testclient import TestClient

from slotwise.api.app import create_app
from slotwise.config import Settings
from slotwise.gateway import ChargeRequest, ChargeResult
from slotwise.gateway.stripe_gateway import StripeGateway
from tests.factories import Api, change_plan

armed = False


def main() -> None:
    mode, payment_method = sys.argv[1], sys.argv[2]
    charge = StripeGateway.charge_off_session

    def charge_then_die(self: StripeGateway, request: ChargeRequest) -> ChargeResult:
        result = charge(self, request)
        if armed and result.succeeded:
            print(json.dumps({"killed_after": result.reference, "key": request.idempotency_key,
                              "org": request.org_id}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    StripeGateway.charge_off_session = charge_then_die  # type: ignore[method-assign]
    settings = Settings.from_env()
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings.operator_key or "")
        org = api.create_org("free", owner_email=f"owner-{uuid.uuid4().hex}@example.test")
        attached = org.put("/payment-method", {"payment_method": payment_method})
        assert attached.status_code == 200, attached.text
        subscribed = change_plan(org, "pro")
        assert subscribed.status_code == 200, subscribed.text
        print(json.dumps({"org": org.id}), flush=True)
        global armed
        armed = True
        if mode == "purchase":
            org.add_slots("agent_slots", 2)
        else:
            api.advance(31)
    sys.exit(3)  # not reached: the process died after the payment


if __name__ == "__main__":
    main()
