"""SIGKILL between the processor charging and slotwise committing (SPEC §12, reconciliation), on SQLite
and PostgreSQL, with the Stripe gateway against localstripe.

A slotwise process (``reconcile_child``) is killed right after a payment succeeded at the fake
Stripe and before its transaction committed — once during a purchase (adding slots), once during the
billing run's renewal. Then, as an operator would:

* ``slotwise doctor`` fails: the processor holds a payment slotwise has no record of;
* ``slotwise billing run`` reconciles it — the purchase's payment refunded in full at the processor
  (the customer was never told it succeeded, and nothing was granted), the renewal redone with the
  same idempotency key and paid with the payment already made;
* the processor holds exactly one payment for that key, ``slotwise doctor`` passes, and another
  billing run changes nothing.

SLOTWISE_RECONCILE_TRIALS trials of each kind per database: one in `make test`, 20 in `make reliability`
(each starts a process and runs the CLI five times: about 14 s).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from slotwise.config import normalize_database_url
from tests.localstripe_server import LocalStripe, localstripe
from tests.reliability.harness import SLOTWISE, fresh_database, process_env, record, trials

__all__ = ["localstripe"]

CRASH_TRIALS = trials("SLOTWISE_RECONCILE_TRIALS", 1)
ROOT = Path(__file__).resolve().parents[2]
GOOD = "4242424242424242"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")
    with fresh_database(str(request.param), tmp_path, f"reconcile_{request.param}") as url:
        yield url


class Trial:
    def __init__(self, url: str, stripe: LocalStripe) -> None:
        self.url, self.stripe = url, stripe
        self.env = process_env(url, SLOTWISE_GATEWAY="stripe", SLOTWISE_STRIPE_SECRET_KEY=stripe.secret_key,
                               SLOTWISE_STRIPE_PUBLISHABLE_KEY=stripe.publishable_key,
                               SLOTWISE_STRIPE_API_BASE=stripe.api_base)
        self.engine = create_engine(normalize_database_url(url))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SLOTWISE, *args], env=self.env, capture_output=True, text=True, timeout=300,
                              check=False)

    def killed(self, mode: str) -> tuple[str, str, str]:
        """Run the child until it dies after a payment: ``(its organization, payment, idempotency key)``."""
        child = subprocess.run(
            [sys.executable, "-m", "tests.reliability.reconcile_child", mode, self.stripe.card_payment_method(GOOD)],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
        said = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
        return said[-1]["org"], said[-1]["killed_after"], said[-1]["key"]

    def intents(self, key: str) -> list[dict[str, Any]]:
        return [pi for pi in self.stripe.payment_intents() if pi["metadata"].get("slotwise_idempotency_key") == key]

    def refunded(self, payment: str) -> int:
        status, body = self.stripe.request("GET", f"/v1/refunds?payment_intent={payment}",
                                           key=self.stripe.secret_key)
        assert status == 200, body
        return sum(int(r["amount"]) for r in body["data"])

    def recorded(self, payment: str) -> list[tuple[str, str | None]]:
        with self.engine.connect() as conn:
            return [(r.status, r.invoice_status) for r in conn.execute(text(
                "select c.status, i.status as invoice_status from charges c left join invoices i "
                "on i.id = c.invoice_id where c.gateway_reference = :p"), {"p": payment})]


def test_a_kill_after_the_charge_is_reconciled_by_the_next_billing_run(database: str, localstripe: LocalStripe) -> None:
    trial = Trial(database, localstripe)
    migrated = trial.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        for _ in range(CRASH_TRIALS):
            for mode in ("purchase", "renewal"):
                org_id, payment, key = trial.killed(mode)
                [intent] = trial.intents(key)
                assert (intent["id"], intent["status"]) == (payment, "succeeded")  # the processor was paid
                assert trial.recorded(payment) == []  # and slotwise wrote nothing of it
                unreconciled = trial.cli("doctor", "--org", org_id)
                assert unreconciled.returncode == 1, unreconciled.stdout
                assert "[processor_charges]" in unreconciled.stdout

                run = trial.cli("billing", "run")
                assert run.returncode == 0, run.stderr
                report = json.loads(run.stdout)
                if mode == "purchase":
                    assert payment in report["refunded"]
                    assert trial.refunded(payment) == intent["amount"]  # given back in full
                    assert trial.recorded(payment) == [("refunded", None)]
                else:
                    assert payment not in report["refunded"]
                    assert trial.refunded(payment) == 0
                    assert trial.recorded(payment) == [("succeeded", "paid")]  # the renewal, paid with it
                assert len(trial.intents(key)) == 1  # never a second charge
                clean = trial.cli("doctor", "--org", org_id)
                assert clean.returncode == 0, clean.stdout + clean.stderr

                again = json.loads(trial.cli("billing", "run").stdout)
                assert payment not in again["refunded"] and payment not in again["reconciled"]
                assert len(trial.recorded(payment)) == 1
                record(f"crash: SIGKILL after the charge, before the commit ({mode})", trials=1)
    finally:
        trial.engine.dispose()
