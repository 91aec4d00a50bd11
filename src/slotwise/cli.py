"""The ``slotwise`` command: serve, migrate, billing run, and the operator's commands."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
from contextlib import ExitStack
from typing import Any

import click

from slotwise.api import present
from slotwise.api import schemas as s
from slotwise.catalog import load_catalog
from slotwise.clock import Clock, SimulatedClock, SystemClock
from slotwise.config import Settings, parse_instant
from slotwise.db import make_engine, make_sessionmaker, transaction
from slotwise.errors import InvalidRequest, SlotwiseError
from slotwise.gateway.factory import make_gateway
from slotwise.migrate import upgrade
from slotwise.services import organizations, renewals
from slotwise.services.context import Env


class Runtime:
    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.sessions = make_sessionmaker(make_engine(self.settings.database_url))
        self.env = Env(catalog=load_catalog(self.settings.catalog_path), gateway=make_gateway(self.settings),
                       quantity_changes_per_hour=self.settings.quantity_changes_per_hour)
        self.clock: Clock = (
            SimulatedClock(self.settings.clock_start) if self.settings.clock == "simulated" else SystemClock()
        )


def _echo(model: Any) -> None:
    click.echo(json.dumps(model.model_dump(mode="json"), indent=2))


def _fail(error: SlotwiseError) -> None:
    click.echo(json.dumps(error.body(), indent=2), err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """slotwise: plans, per-slot add-ons and pro-rated billing for an AI agent platform."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = Settings.from_env()
    upgrade(settings.database_url)
    click.echo("Database is up to date.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Run no job worker in the server (as SLOTWISE_WORKER=0); "
                                                "run `slotwise worker` instead.")
def serve(host: str, port: int, workers: int, no_worker: bool) -> None:
    """Migrate, then serve the API and pages (uvicorn with httptools and uvloop; see slotwise.server).

    Each server process also runs a job worker (auto-recharges) unless told not to."""
    from slotwise.server import serve as run_server

    if no_worker:
        os.environ["SLOTWISE_WORKER"] = "0"  # read by each server process's app (slotwise.asgi)
    upgrade(Settings.from_env().database_url)
    run_server("slotwise.asgi:app", host=host, port=port, workers=workers, proxy_headers=True)


@main.command()
@click.option("--once", is_flag=True, help="Run the jobs due now, then exit.")
def worker(once: bool) -> None:
    """Run queued jobs (auto-recharges, processor events) and deliver webhooks to the platform's
    endpoints until stopped (Ctrl+C or SIGTERM); any number may run at once, on any machine."""
    from slotwise.worker import Worker

    rt = Runtime()
    runner = Worker(rt.sessions, env=rt.env, clock=rt.clock)
    if once:
        click.echo(f"slotwise worker: {runner.run_pending()} job(s) run.")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo("slotwise worker: waiting for jobs (Ctrl+C to stop).", err=True)
    runner.run_forever(stop)


@main.group()
def billing() -> None:
    """Renewals and payment retries."""


@billing.command("run")
def billing_run() -> None:
    """Renew every due subscription and retry failed payments, at the current time.

    Prints what was done as JSON; on a long run, a progress line goes to stderr every few seconds.
    Several may run at once (on PostgreSQL they share the work)."""
    rt = Runtime()
    with rt.sessions.begin() as db:
        at = rt.clock.now(db)
    with SpooledSweepReport() as report:
        renewals.sweep(rt.sessions, env=rt.env, at=at, report=report, progress=ProgressLine())
        report.print_json(present.sweep(at, renewals.SweepReport()).model_dump(mode="json"))


class SpooledSweepReport(renewals.SweepReport):
    """A sweep's ids kept in temporary files rather than in memory until they are printed, so that a
    run's memory stays flat however many organizations it renews."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = ExitStack()  # closes (and so removes) the files on __exit__
        self.files = {name: self.closing.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))  # noqa: SIM115
                      for name in self.__dataclass_fields__}

    def __enter__(self) -> SpooledSweepReport:
        return self

    def __exit__(self, *_: object) -> None:
        self.closing.close()

    def merge(self, other: renewals.SweepReport) -> None:
        for name, spool in self.files.items():
            spool.writelines(f"{item}\n" for item in getattr(other, name))

    def print_json(self, body: dict[str, Any]) -> None:
        """``body`` as ``_echo`` prints it (indented JSON), each spooled list streamed in its place."""
        out = sys.stdout
        out.write("{")
        for k, (key, value) in enumerate(body.items()):
            out.write(("," if k else "") + f"\n  {json.dumps(key)}: ")
            spool = self.files.get(key)
            if spool is None:
                out.write(json.dumps(value))
                continue
            spool.seek(0)
            items = (json.dumps(line.rstrip("\n")) for line in spool)
            first = next(items, None)
            if first is None:
                out.write("[]")
                continue
            out.write(f"[\n    {first}")
            out.writelines(f",\n    {item}" for item in items)
            out.write("\n  ]")
        out.write("\n}\n")


class ProgressLine:
    """On stderr every few seconds of a long sweep: what it has done so far, and how fast."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.due = every, every

    def __call__(self, done: renewals.SweepProgress) -> None:
        if done.seconds < self.due:
            return
        self.due = done.seconds + self.every
        click.echo(f"billing run: {done.renewed:,} renewals, {done.retried:,} retries, {done.claimed:,} "
                   f"organizations in {done.seconds:.0f} s ({done.renewed / done.seconds:,.0f} renewals/s)", err=True)


@main.command()
@click.option("--org", "org_ids", multiple=True, help="Check only this organization (repeatable).")
def doctor(org_ids: tuple[str, ...]) -> None:
    """Check the stored invariants (capacity, invoices, charges, billed periods); exit 1 on any violation."""
    from slotwise.doctor import run_doctor

    rt = Runtime()
    found = run_doctor(rt.sessions, rt.env.catalog, org_ids=org_ids or None, gateway=rt.env.gateway)
    for violation in found.violations:
        click.echo(str(violation))
    summary = f"{found.organizations} organizations and {found.invoices} invoices checked"
    if not found.healthy:
        click.echo(f"slotwise doctor: {len(found.violations)} violation(s); {summary}.", err=True)
        sys.exit(1)
    click.echo(f"slotwise doctor: no violations; {summary}.")


@main.group()
def operator() -> None:
    """What the operator API does, from the command line."""


@operator.command("create-org")
@click.option("--name", required=True)
@click.option("--owner-email", required=True)
@click.option("--owner-name")
@click.option("--owner-password")
@click.option("--plan", default="free", show_default=True)
@click.option("--card-number")
def create_org(name: str, owner_email: str, owner_name: str | None, owner_password: str | None,
               plan: str, card_number: str | None) -> None:
    """Create an organization and its Owner (prints the Owner's API token once)."""
    rt = Runtime()
    try:
        with transaction(rt.sessions) as db:
            created = organizations.create_organization(
                db, env=rt.env, name=name, owner_email=owner_email, owner_name=owner_name,
                owner_password=owner_password, plan_code=plan, card_number=card_number, at=rt.clock.now(db))
            org, owner = created.organization, created.owner
            out = s.CreatedOrganization(
                id=org.id, name=org.name, plan=org.plan_code, created_at=org.created_at,
                owner=s.UserWithToken(**present.user(owner.user).model_dump(), api_token=owner.api_token))
    except SlotwiseError as error:
        _fail(error)
    _echo(out)


@operator.command("add-user")
@click.argument("org_id")
@click.option("--email", required=True)
@click.option("--name")
@click.option("--password")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
def add_user(org_id: str, email: str, name: str | None, password: str | None, role: str) -> None:
    """Add a member to an organization (takes a seat)."""
    rt = Runtime()
    try:
        with transaction(rt.sessions) as db:
            new = organizations.add_user(db, env=rt.env, org_id=org_id, email=email, name=name,
                                         password=password, role=role,  # type: ignore[arg-type]
                                         at=rt.clock.now(db))
            out = s.UserWithToken(**present.user(new.user).model_dump(), api_token=new.api_token)
    except SlotwiseError as error:
        _fail(error)
    _echo(out)


@operator.command("clock")
@click.option("--advance-days", type=int)
@click.option("--to", "to_text")
def clock(advance_days: int | None, to_text: str | None) -> None:
    """Move the simulated clock forwards and run what came due."""
    if (advance_days is None) == (to_text is None):
        raise click.UsageError("give exactly one of --advance-days or --to")
    rt = Runtime()
    with rt.sessions.begin() as db:
        now = rt.clock.now(db)
    try:
        try:
            to = parse_instant(to_text) if to_text else None
        except ValueError:
            raise InvalidRequest("--to must be an ISO 8601 time, e.g. 2026-12-15T00:00:00Z.", field="to") from None
        target = renewals.clock_target(now, advance_days=advance_days, to=to)
        at, report = renewals.advance_clock(rt.sessions, env=rt.env, clock=rt.clock, to=target)
    except SlotwiseError as error:
        _fail(error)
    _echo(present.sweep(at, report))


CLOCK_HINT = ' (move it: POST /v1/operator/clock {"advance_days": 30})'


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
def demo(port: int) -> None:
    """Seed the demo organization (once) and print how to use it."""
    from slotwise import demo as seed

    rt = Runtime()
    with transaction(rt.sessions) as db:
        access = seed.seed_demo(db, env=rt.env, at_now=rt.clock.now(db))
    base = f"http://127.0.0.1:{port}"
    key = rt.settings.operator_key or "(set SLOTWISE_OPERATOR_KEY)"
    click.echo(f"""
slotwise demo — {"seeded" if access.created else "already seeded"}: Acme Robotics on the Pro plan
  Pages:     {base}/login   owner {seed.OWNER_EMAIL} / {seed.OWNER_PASSWORD}
                             member {seed.MEMBER_EMAIL} / {seed.MEMBER_PASSWORD}
  API:       {base}/docs (OpenAPI at {base}/openapi.json)
  Org id:    {access.org_id}
  Owner API token (new each start): {access.owner_token}
  Operator key: {key}
  Clock:     {rt.settings.clock}{CLOCK_HINT if rt.settings.clock == "simulated" else ""}

Try:
  curl -s -H 'Authorization: Bearer {access.owner_token}' {base}/v1/organizations/{access.org_id}/addons
""")
    if access.paid_agent_id:
        agent = access.paid_agent_id
        click.echo(f"""Paid agent "{seed.PAID_AGENT}" (a visitor buys a pass; card 4242 4242 4242 4242):
  Paywall:   {base}/pay/{agent}
  Access:    curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
               {base}/v1/agents/{agent}/access -d '{{"visitor_token":"swv_…"}}'
  Message:   curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
               {base}/v1/agents/{agent}/messages -d '{{"visitor_token":"swv_…","reference":"msg-1"}}'
""")


if __name__ == "__main__":
    main()
