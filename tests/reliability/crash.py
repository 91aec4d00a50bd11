"""Crash trials: SIGKILL a real process at a random moment, restart, and check that nothing is
half-written and that finishing the work does it exactly once.

* ``server_crash_trial``: three clients send adds, removals and agent creations (each with its own
  ``Idempotency-Key``) to one `slotwise serve`; it is killed mid-traffic and restarted. Then `slotwise
  doctor` must pass, every request that got no answer is retried with its key (a replay proves it
  had committed; otherwise it runs now), and the organization must hold exactly the sum of the
  successful answers: each add present once with its paid invoice and its one charge, each agent
  once, and no slots without an invoice.
* ``sweep_crash_trial``: `slotwise billing run` (or `slotwise operator clock --to`) renewing many
  organizations is killed mid-sweep; `slotwise doctor` must pass, and a rerun must issue exactly
  the renewals still due, so that each period is billed once.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from slotwise.config import parse_instant
from tests.factories import DECLINED_CARD, Org
from tests.reliability.harness import SLOTWISE, Server, Store, doctor_cli, headers, process_env, run_cli

THREADS, OPS_PER_THREAD = 3, 7  # at most 21 quantity changes: under the hourly cap of 30
REFUSALS = {"below_usage", "invalid_request", "limit_reached"}


@dataclass
class Op:
    kind: str  # add | remove | create
    quantity: int
    key: str = field(default_factory=lambda: f"crash-{uuid.uuid4()}")
    sent: bool = False
    answer: httpx.Response | None = None  # the answer before the crash, if one came
    final: httpx.Response | None = None  # the definitive answer, after retrying if needed

    def request(self, client: httpx.Client, org: Org) -> httpx.Response:
        if self.kind == "create":
            return client.post(f"{org.path}/agents", json={"name": f"crash {self.key[-6:]}"},
                               headers=headers(org.token, self.key))
        return client.post(f"{org.path}/addons/agent_slots/{self.kind}", json={"quantity": self.quantity},
                           headers=headers(org.token, self.key))

    @property
    def succeeded(self) -> bool:
        assert self.final is not None
        return self.final.is_success


def _drive(server: Server, org: Org, ops: list[Op]) -> None:
    with server.client(timeout=30) as client:
        for op in ops:
            op.sent = True
            try:
                op.answer = op.request(client, org)
            except httpx.TransportError:
                return  # the server is gone; the rest of this client's work is never sent


def server_crash_trial(server: Server, store: Store, rng: random.Random) -> dict[str, int]:
    org = server.api().create_org("pro")
    base_slots = rng.randint(0, 4)
    if base_slots:
        assert org.add_slots("agent_slots", base_slots).status_code == 200
    base_agents = set(org.create_agents(rng.randint(0, 5 + base_slots)))
    lanes = [[Op(rng.choice(["add", "add", "remove", "create"]), rng.randint(1, 3)) for _ in range(OPS_PER_THREAD)]
             for _ in range(THREADS)]
    ops = [op for lane in lanes for op in lane]
    threads = [threading.Thread(target=_drive, args=(server, org, lane)) for lane in lanes]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.0, 0.35))
    server.kill()
    for thread in threads:
        thread.join(timeout=60)
    in_flight = [op for op in ops if op.sent and op.answer is None]

    server.start()
    checked = doctor_cli(store.url, org.id)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    replayed = 0
    with server.client() as client:
        for op in ops:
            op.final = op.answer if op.answer is not None else op.request(client, org)
            replayed += op in in_flight and op.final.headers.get("Idempotent-Replayed") == "true"
    _assert_exactly_the_answered_work(store, org, ops, base_slots, base_agents)
    return {"trials": 1, "violations": 0, "requests_in_flight_at_kill": len(in_flight),
            "in_flight_that_had_committed": replayed, "kills_with_requests_in_flight": int(bool(in_flight))}


def _assert_exactly_the_answered_work(
    store: Store, org: Org, ops: list[Op], base_slots: int, base_agents: set[str]
) -> None:
    for op in ops:
        assert op.final is not None and op.final.status_code < 500, op.final and op.final.text
        if not op.succeeded:
            assert op.final.json()["error"]["code"] in REFUSALS, op.final.text
    adds = [op for op in ops if op.kind == "add" and op.succeeded]
    removed = sum(op.quantity for op in ops if op.kind == "remove" and op.succeeded)
    creates = [op.final.json() for op in ops if op.kind == "create" and op.succeeded and op.final]
    created = {agent["id"] for agent in creates}
    restored = sum(agent["restored_slots"] for agent in creates)  # usage grew into a scheduled removal
    active = base_slots + sum(op.quantity for op in adds)

    cap = org.capacity("agents")
    assert (cap["active_slots"], cap["renewal_slots"]) == (active, active - removed + restored)
    agents = {a["id"] for a in org.items("/agents")}
    assert agents == base_agents | created and cap["used"] == len(agents)
    answered_invoices = {op.final.json()["invoice"]["id"]: op.final.json()["invoice"] for op in adds if op.final}
    stored = [i for i in org.invoices() if i["kind"] == "addon"]
    assert len(stored) == len(adds) + (1 if base_slots else 0)
    for invoice in stored:
        assert invoice["status"] == "paid"
        if invoice["id"] in answered_invoices:
            assert invoice["total"] == answered_invoices[invoice["id"]]["total"]
    assert set(answered_invoices) <= {i["id"] for i in stored}
    charges = store.scalar("select count(*) from charges where org_id = :o and status = 'succeeded'", o=org.id)
    assert charges == 1 + len(stored)  # the subscription's first invoice, then one per add
    found = store.doctor([org.id])
    assert found.violations == [], "\n".join(map(str, found.violations))


# --- the billing sweep ----------------------------------------------------------------------------

def populate(server: Server, rng: random.Random, organizations: int) -> None:
    """Organizations with anchors spread over about two weeks, add-ons, declined cards, plan changes."""
    api = server.api()
    for i in range(organizations):
        if i % 4 == 0:  # anchors differ, so the clock sweep stops at many instants
            now = parse_instant(api.advance(0)["at"])
            api.clock_to((now + timedelta(hours=rng.randint(1, 20))).isoformat())
        org = api.create_org(rng.choice(["starter", "pro", "pro", "business"]))
        slots = rng.randint(0, 4)
        if slots:
            assert org.add_slots("agent_slots", slots).status_code == 200
        roll = rng.random()
        if roll < 0.15:  # renewals declined, then retried 1, 3 and 5 days later
            assert org.put("/payment-method", {"card_number": DECLINED_CARD}).status_code == 200
        elif roll < 0.25:  # a downgrade scheduled for renewal (refused where usage does not fit)
            org.post("/subscription", {"plan": "starter"})
        elif roll < 0.28:  # back to free at renewal: the subscription ends, no renewal invoice
            if slots:
                assert org.remove_slots("agent_slots").status_code == 200
            assert org.post("/subscription", {"plan": "free"}).status_code == 200


def sweep_crash_trial(store: Store, rng: random.Random, command: str, work_seconds: float) -> dict[str, int]:
    """Kill one sweep at a random point, check, rerun, check. ``command``: "billing" or "clock"."""
    to = store.now() + timedelta(days=rng.randint(27, 35), hours=rng.randint(0, 23))
    due = store.renewals_due(to)
    count = "select count(*) from invoices where kind = 'renewal'"
    before = store.scalar(count)
    if command == "billing":
        store.set_clock(to)
        args = ["billing", "run"]
    else:
        args = ["operator", "clock", "--to", to.isoformat()]
    process = subprocess.Popen([SLOTWISE, *args], env=process_env(store.url), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_for_the_moment(store, process, rng, count, before, due, work_seconds)
    finished_first = process.poll() is not None
    process.kill()
    process.wait(timeout=30)
    progress = store.scalar(count) - before

    checked = doctor_cli(store.url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rerun = run_cli(store.url, *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert store.scalar(count) - before == due
    assert store.scalar("select count(*) from subscriptions where status in ('active', 'past_due') "
                        "and period_end <= :to", to=to) == 0
    assert store.now() == to
    found = store.doctor()
    assert found.violations == [], "\n".join(map(str, found.violations))
    return {"trials": 1, "violations": 0, "renewals_due": due, "renewals_done_before_kill": progress,
            "killed_between_first_and_last_renewal": int(0 < progress < due),
            "killed_before_any_renewal": int(progress == 0), "killed_after_it_had_finished": int(finished_first)}


def _wait_for_the_moment(store: Store, process: subprocess.Popen[bytes], rng: random.Random, count: str,
                         before: int, due: int, work_seconds: float) -> None:
    """Sleep until a random moment of the sweep: mostly when a random number of renewals is written,
    else a random time after the first renewal (retries, clock steps) or from the process start."""
    roll = rng.random()
    deadline = time.monotonic() + 60
    if roll < 0.6 and due > 1:
        target = before + rng.randint(1, due - 1)
        while store.scalar(count) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    elif roll < 0.8:
        while store.scalar(count) == before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, work_seconds))
    else:
        time.sleep(rng.uniform(0, 1.2))


def timed_sweep(store: Store, command: str) -> float:
    """Seconds one complete sweep of a month spends writing renewals (from its first renewal to its
    exit), measured on a run that is not killed, so that kills can be spread over that span."""
    to = store.now() + timedelta(days=31)
    args = ["billing", "run"] if command == "billing" else ["operator", "clock", "--to", to.isoformat()]
    if command == "billing":
        store.set_clock(to)
    count = "select count(*) from invoices where kind = 'renewal'"
    before = store.scalar(count)
    process = subprocess.Popen([SLOTWISE, *args], env=process_env(store.url), stdout=subprocess.DEVNULL)
    while store.scalar(count) == before and process.poll() is None:
        time.sleep(0.005)
    started = time.monotonic()
    assert process.wait(timeout=300) == 0
    return time.monotonic() - started
