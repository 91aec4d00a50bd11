"""The ``slotwise`` command on a fresh SQLite file, as an operator would use it (SPEC §8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from slotwise.api.app import create_app
from slotwise.cli import main
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.db import make_engine, make_sessionmaker
from slotwise.demo import MEMBER_EMAIL, OWNER_EMAIL
from tests.factories import DECLINED_CARD

START = "2026-11-15T09:00:00Z"


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'cli.db'}"
        self.env: dict[str, str | None] = {
            "SLOTWISE_DATABASE_URL": self.url,
            "SLOTWISE_CLOCK": "simulated",
            "SLOTWISE_CLOCK_START": START,
            "SLOTWISE_OPERATOR_KEY": "cli-operator-key",
            "SLOTWISE_CATALOG": None,
        }

    def run(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(main, list(args), env={**self.env, **env})

    def json(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    def refused(self, *args: str, code: str, **env: str | None) -> dict[str, Any]:
        result = self.run(*args, **env)
        assert result.exit_code == 1, (result.stdout, result.stderr)
        error: dict[str, Any] = json.loads(result.stderr)["error"]
        assert error["code"] == code, error
        return error

    @contextmanager
    def api(self) -> Iterator[TestClient]:
        """The HTTP API over the same database, to see what the commands did."""
        settings = Settings.from_env({k: v for k, v in self.env.items() if v is not None})
        with TestClient(create_app(settings)) as client:
            yield client


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path)
    result = cli.run("migrate")
    assert result.exit_code == 0, result.stderr
    return cli


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestMigrate:
    def test_creates_the_schema_and_is_idempotent(self, tmp_path: Path) -> None:
        cli = Cli(tmp_path)
        first = cli.run("migrate")
        assert first.exit_code == 0 and "up to date" in first.stdout
        second = cli.run("migrate")
        assert second.exit_code == 0
        tables = set(inspect(make_engine(cli.url)).get_table_names())
        assert {"organizations", "users", "subscriptions", "invoices", "org_addons", "alembic_version"} <= tables


class TestOperatorCommands:
    def test_create_org_and_add_user(self, cli: Cli) -> None:
        created = cli.json("operator", "create-org", "--name", "Acme", "--owner-email", "o@acme.test",
                           "--plan", "pro")
        assert created["plan"] == "pro" and created["owner"]["role"] == "owner"
        token = created["owner"]["api_token"]
        user = cli.json("operator", "add-user", created["id"], "--email", "m@acme.test", "--role", "admin")
        assert (user["email"], user["role"]) == ("m@acme.test", "admin") and user["api_token"]

        with cli.api() as client:
            org = client.get(f"/v1/organizations/{created['id']}", headers=bearer(token)).json()
            assert org["plan"]["code"] == "pro"
            assert org["capacity"]["members"]["used"] == 2
            assert org["subscription"]["current_period"]["start"] == START
            [invoice] = client.get(f"/v1/organizations/{created['id']}/invoices", headers=bearer(token)).json()["data"]
            assert (invoice["total"], invoice["status"]) == (15000, "paid")
            assert client.get(f"/v1/organizations/{created['id']}",
                              headers=bearer(user["api_token"])).status_code == 200

    def test_refusals_exit_1_with_the_error_and_change_nothing(self, cli: Cli) -> None:
        cli.refused("operator", "create-org", "--name", "Declined", "--owner-email", "d@acme.test",
                    "--plan", "pro", "--card-number", DECLINED_CARD, code="payment_failed")
        # Nothing was left behind: the email is still free.
        starter = cli.json("operator", "create-org", "--name", "Declined", "--owner-email", "d@acme.test",
                           "--plan", "starter")
        cli.refused("operator", "add-user", starter["id"], "--email", "x@acme.test", code="teams_unavailable")
        cli.refused("operator", "add-user", "org_0000000000000000", "--email", "y@acme.test", code="not_found")
        cli.refused("operator", "create-org", "--name", "Twice", "--owner-email", "d@acme.test",
                    code="email_taken")


class TestClockAndBillingRun:
    def test_clock_advance_days_runs_the_renewals(self, cli: Cli) -> None:
        created = cli.json("operator", "create-org", "--name", "Acme", "--owner-email", "o@acme.test",
                           "--plan", "starter")
        report = cli.json("operator", "clock", "--advance-days", "30")
        assert report["at"] == "2026-12-15T09:00:00Z"
        assert len(report["renewed"]) == 1 and report["payments_failed"] == []
        assert cli.json("billing", "run")["renewed"] == []  # the clock already ran it
        report = cli.json("operator", "clock", "--to", "2027-02-15T09:00:00Z")
        assert len(report["renewed"]) == 2

        with cli.api() as client:
            invoices = client.get(f"/v1/organizations/{created['id']}/invoices",
                                  headers=bearer(created["owner"]["api_token"])).json()["data"]
            assert sorted(i["period_start"][:10] for i in invoices) == [
                "2026-11-15", "2026-12-15", "2027-01-15", "2027-02-15"]

    def test_billing_run_bills_what_came_due_once(self, cli: Cli) -> None:
        cli.json("operator", "create-org", "--name", "Acme", "--owner-email", "o@acme.test", "--plan", "pro")
        # Time passed while no billing run happened (the clock moved without a sweep).
        sessions = make_sessionmaker(make_engine(cli.url))
        with sessions.begin() as db:
            SimulatedClock().set(db, datetime(2027, 1, 20, tzinfo=UTC))
        first = cli.json("billing", "run")
        assert first["at"] == "2027-01-20T00:00:00Z"
        assert len(first["renewed"]) == 2  # Dec 15 and Jan 15
        assert cli.json("billing", "run")["renewed"] == []

    def test_clock_needs_a_simulated_clock_and_one_option(self, cli: Cli) -> None:
        cli.refused("operator", "clock", "--advance-days", "1", code="clock_not_simulated", SLOTWISE_CLOCK="system")
        assert cli.run("operator", "clock").exit_code == 2
        assert cli.run("operator", "clock", "--advance-days", "1", "--to", "2027-01-01").exit_code == 2


    def test_out_of_range_clock_moves_are_refused_not_crashed(self, cli: Cli) -> None:
        """A move past the years a datetime can hold was an OverflowError traceback."""
        cli.refused("operator", "clock", "--advance-days", "3000000", code="invalid_request")
        cli.refused("operator", "clock", "--advance-days", "3661", code="invalid_request")
        cli.refused("operator", "clock", "--to", "9999-12-31T23:59:59Z", code="invalid_request")
        cli.refused("operator", "clock", "--to", "next tuesday", code="invalid_request")
        assert cli.json("operator", "clock", "--advance-days", "1")["at"].startswith("2026-11-16")


class TestDemo:
    def test_seeds_once_and_hands_out_a_fresh_token_each_time(self, cli: Cli) -> None:
        first = cli.run("demo")
        second = cli.run("demo")
        assert first.exit_code == second.exit_code == 0, (first.stderr, second.stderr)
        assert "seeded" in first.stdout and "already seeded" not in first.stdout
        assert "already seeded" in second.stdout
        (org1, token1), (org2, token2) = self.access(first.stdout), self.access(second.stdout)
        assert org1 == org2 and token1 != token2
        assert OWNER_EMAIL in second.stdout

        with cli.api() as client:
            for token in (token1, token2):
                org = client.get(f"/v1/organizations/{org1}", headers=bearer(token)).json()
                assert org["plan"]["code"] == "pro"
                assert org["capacity"]["agents"]["used"] == 4  # not doubled by the second run
                assert org["capacity"]["members"]["used"] == 2
            members = client.get(f"/v1/organizations/{org1}/members", headers=bearer(token1)).json()["data"]
            assert sorted(m["email"] for m in members) == sorted([OWNER_EMAIL, MEMBER_EMAIL])
            assert len(client.get(f"/v1/organizations/{org1}/invoices", headers=bearer(token1)).json()["data"]) == 1
            # The paid agent it prints: its paywall sells a pass whose token the access check admits.
            [agent] = [line.rsplit("/pay/", 1)[1].strip() for line in second.stdout.splitlines() if "/pay/" in line]
            assert client.get(f"/v1/agents/{agent}/paywall").json()["agent_name"] == "Premium Tutor"
            bought = client.post(f"/v1/agents/{agent}/checkout", json={
                "email": "visitor@example.test", "card_number": "4242424242424242", "checkout": "demo-1"})
            assert bought.status_code == 201, bought.text
            checked = client.post(f"/v1/agents/{agent}/access", json={"visitor_token": bought.json()["visitor_token"]},
                                  headers=bearer("cli-operator-key")).json()
            assert (checked["allowed"], checked["pass"]["credits_left"]) == (True, 50)

    @staticmethod
    def access(stdout: str) -> tuple[str, str]:
        fields = dict(line.strip().split(":", 1) for line in stdout.splitlines() if line.strip().startswith(
            ("Org id:", "Owner API token")))
        org = fields["Org id"].strip()
        token = next(v for k, v in fields.items() if k.startswith("Owner API token")).strip()
        return org, token
