"""Races across two `slotwise serve` processes on one database (PostgreSQL, and SQLite too).

Each race sends its requests from their own threads and connections, alternating between the two
servers, all released by one barrier once every connection is open. Trials repeat with random
sizes (SLOTWISE_RACE_TRIALS per kind; a few in `make test`, hundreds in `make reliability`), each
on a fresh organization, and every trial ends with the doctor on what it touched.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_KEY
from tests.factories import DECLINED_CARD, Api, Org, set_card
from tests.reliability.harness import Server, Store, doctor_cli, fresh_database, headers, record, trials

RACE_TRIALS = trials("SLOTWISE_RACE_TRIALS", 2)
WORKERS = 16
Request = Callable[[httpx.Client], httpx.Response]


@dataclass
class Pair:
    backend: str
    url: str
    servers: list[Server]
    store: Store
    api: Api  # speaks to the first server; the races use both

    def assert_healthy(self, orgs: list[Org]) -> None:
        found = self.store.doctor([o.id for o in orgs])
        assert found.violations == [], "\n".join(map(str, found.violations))


@contextlib.contextmanager
def two_servers(request: pytest.FixtureRequest, folder: Path, name: str) -> Iterator[Pair]:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_engine")  # reachable, or skipped/failed like the rest of the suite
    with fresh_database(request.param, folder, name) as url:
        servers = [Server(url, folder / f"{name}{i}.log") for i in range(2)]
        store = None
        try:
            for server in servers:  # one after the other: each brings the schema up to date as it starts
                server.start()
            store = Store(url)
            yield Pair(request.param, url, servers, store, servers[0].api())
        finally:
            for server in servers:
                server.stop()
            if store is not None:
                store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_servers(request, tmp_path_factory.mktemp("two-servers"), "races") as found:
        yield found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def billing_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A database of its own: each billing trial renews every live subscription in it."""
    with two_servers(request, tmp_path_factory.mktemp("billing-runs"), "billing") as found:
        yield found


def race(pair: Pair, requests: list[Request]) -> list[httpx.Response]:
    clients = [pair.servers[i % 2].client() for i in range(len(requests))]
    for client in clients:  # connect first, so the barrier releases requests rather than handshakes
        client.get("/v1/plans")
    barrier = threading.Barrier(len(requests))
    results: list[httpx.Response | BaseException | None] = [None] * len(requests)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = requests[i](clients[i])
        except BaseException as error:  # reported below, with every other outcome
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for client in clients:
        client.close()
    assert all(isinstance(r, httpx.Response) for r in results), results
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]
    return responses


def post(path: str, body: Any, token: str, key: str | None = None) -> Request:
    return lambda client: client.post(path, json=body, headers=headers(token, key))


def codes(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(str(r.status_code) if r.is_success else r.json()["error"]["code"] for r in responses)


def rng_for(pair: Pair, name: str) -> random.Random:
    seed = int(os.environ.get("SLOTWISE_RELIABILITY_SEED", random.randrange(1 << 30)))
    print(f"{name}[{pair.backend}] seed {seed}")  # shown on failure, to replay the same trials
    return random.Random(seed)


@pytest.mark.parametrize("resource", ["agents", "members"])
def test_creations_at_limit_minus_one_give_exactly_one_success(pair: Pair, resource: str) -> None:
    rng = rng_for(pair, f"create_{resource}")
    orgs = []
    for trial in range(RACE_TRIALS):
        org = pair.api.create_org("pro")
        orgs.append(org)
        extra = rng.randint(0, 3)
        addon = "agent_slots" if resource == "agents" else "member_slots"
        if extra:
            assert org.add_slots(addon, extra).status_code == 200
        limit = org.capacity(resource)["total"]
        if resource == "agents":
            org.create_agents(limit - 1)
            path = "/agents"
            make = [post(org.path + path, {"name": f"racer {i}"}, org.token) for i in range(WORKERS)]
        else:
            for i in range(limit - 2):  # the owner holds one seat; each invitation holds one
                assert org.post("/invitations", {"email": f"seat{i}.t{trial}@example.test"}).status_code == 201
            make = [post(org.path + "/invitations", {"email": f"racer{i}.t{trial}@example.test"}, org.token)
                    for i in range(WORKERS)]
        assert org.capacity(resource)["used"] == limit - 1

        outcome = codes(race(pair, make))

        assert outcome == Counter({"201": 1, "limit_reached": WORKERS - 1})
        assert org.capacity(resource)["used"] == limit
        record(f"race: {WORKERS} {resource} creations at limit-1 [{pair.backend}]", trials=1, violations=0)
    pair.assert_healthy(orgs)


def test_removals_never_take_capacity_below_usage(pair: Pair) -> None:
    rng = rng_for(pair, "removals")
    orgs = []
    for _ in range(RACE_TRIALS):
        org = pair.api.create_org("pro")
        orgs.append(org)
        slots = rng.randint(4, 12)
        assert org.add_slots("agent_slots", slots).status_code == 200
        org.create_agents(5 + rng.randint(0, slots))
        before = org.capacity("agents")
        slack = before["renewal_total"] - before["used"]
        quantities = [rng.randint(1, 3) for _ in range(WORKERS)]

        responses = race(pair, [post(org.path + "/addons/agent_slots/remove", {"quantity": q}, org.token)
                                for q in quantities])

        accepted = sum(q for q, r in zip(quantities, responses, strict=True) if r.status_code == 200)
        after = org.capacity("agents")
        assert accepted <= slack
        assert after["renewal_slots"] == slots - accepted and after["active_slots"] == slots
        assert after["used"] <= after["renewal_total"] <= after["total"]
        left = slack - accepted
        for q, r in zip(quantities, responses, strict=True):  # slack only shrinks: a refusal is never wrong
            if r.status_code != 200:
                assert r.json()["error"]["code"] in ("below_usage", "invalid_request") and q > left, r.text
        record(f"race: {WORKERS} removals near usage [{pair.backend}]", trials=1, violations=0,
               removals_accepted=sum(r.status_code == 200 for r in responses))
    pair.assert_healthy(orgs)


def test_adds_with_one_idempotency_key_charge_once(pair: Pair) -> None:
    rng = rng_for(pair, "one_key")
    orgs = []
    for _ in range(RACE_TRIALS):
        org = pair.api.create_org("pro")
        orgs.append(org)
        quantity, key = rng.randint(1, 5), f"buy-{uuid.uuid4()}"

        responses = race(pair, [post(org.path + "/addons/agent_slots/add", {"quantity": quantity}, org.token, key)
                                for _ in range(WORKERS)])

        assert {r.status_code for r in responses} == {200}
        assert len({r.text for r in responses}) == 1  # every one got the same answer: the same invoice
        assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
        invoice_id = responses[0].json()["invoice"]["id"]
        assert [i["id"] for i in org.invoices() if i["kind"] == "addon"] == [invoice_id]
        assert pair.store.scalar("select count(*) from charges where invoice_id = :i", i=invoice_id) == 1
        assert org.capacity("agents")["active_slots"] == quantity
        record(f"race: {WORKERS} adds with one Idempotency-Key [{pair.backend}]", trials=1, violations=0)
    pair.assert_healthy(orgs)


def _mixed_request(rng: random.Random, org: Org, agents: list[str], invitations: list[str], n: int) -> Request:
    pick = rng.choice(["add", "add", "remove", "remove", "create", "create", "archive", "unarchive", "delete",
                       "invite", "revoke", "keep"])
    addon = rng.choice(["agent_slots", "member_slots"])
    p, t = org.path, org.token
    if pick in ("add", "remove"):
        return post(f"{p}/addons/{addon}/{pick}", {"quantity": rng.randint(1, 3)}, t)
    if pick == "keep":
        return post(f"{p}/addons/{addon}/keep", None, t)
    if pick == "create":
        return post(f"{p}/agents", {"name": f"mixed {n}"}, t)
    if pick == "invite":
        return post(f"{p}/invitations", {"email": f"mixed{n}.{uuid.uuid4().hex[:8]}@example.test"}, t)
    if pick == "revoke":
        invitation = rng.choice(invitations)
        return lambda c: c.delete(f"{p}/invitations/{invitation}", headers=headers(t))
    agent = rng.choice(agents)
    if pick == "delete":
        return lambda c: c.delete(f"{p}/agents/{agent}", headers=headers(t))
    return post(f"{p}/agents/{agent}/{pick}", None, t)


def test_mixed_adds_removals_and_creations_keep_the_invariant(pair: Pair) -> None:
    rng = rng_for(pair, "mixed")
    orgs = []
    seen: Counter[str] = Counter()
    for _ in range(RACE_TRIALS):
        org = pair.api.create_org("pro")
        orgs.append(org)
        for addon, most in (("agent_slots", 4), ("member_slots", 2)):
            if n := rng.randint(0, most):
                assert org.add_slots(addon, n).status_code == 200
        agents = org.create_agents(rng.randint(1, org.capacity("agents")["total"]))
        invitations = [org.post("/invitations", {"email": f"m{i}.{uuid.uuid4().hex[:8]}@example.test"}).json()["id"]
                       for i in range(rng.randint(1, org.capacity("members")["total"] - 1))]

        outcome = codes(race(pair, [_mixed_request(rng, org, agents, invitations, n) for n in range(WORKERS)]))

        assert set(outcome) <= {"200", "201", "204", "limit_reached", "below_usage", "invalid_request",
                                "not_found", "conflict"}, outcome
        for resource, cap in org.summary()["capacity"].items():
            assert cap["used"] <= cap["renewal_total"] <= cap["total"], (resource, cap)
        seen.update(outcome)
        record(f"race: {WORKERS} mixed changes [{pair.backend}]", trials=1, violations=0)
    pair.assert_healthy(orgs)
    assert seen["200"] and seen["limit_reached"] + seen["below_usage"] >= 0


def _assert_retries_follow_the_schedule(pair: Pair, now: Any) -> None:
    """No invoice was tried more often than its renewal plus the retries due by now (1, 3, 5 days)."""
    from sqlalchemy import select

    from slotwise.models import Invoice
    from slotwise.services.renewals import RETRY_AFTER_DAYS

    with pair.store.sessions() as db:
        for invoice in db.scalars(select(Invoice).where(Invoice.kind == "renewal", Invoice.attempt_count > 1)):
            due = 1 + sum(invoice.created_at + timedelta(days=d) <= now for d in RETRY_AFTER_DAYS)
            assert invoice.attempt_count <= due, (invoice.id, invoice.attempt_count, due)


def test_concurrent_billing_runs_bill_each_period_once(billing_pair: Pair) -> None:
    pair = billing_pair
    rng = rng_for(pair, "billing_runs")
    operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    for _ in range(RACE_TRIALS):
        orgs = [pair.api.create_org(rng.choice(["starter", "pro", "business"])) for _ in range(4)]
        for org in orgs:
            if n := rng.randint(0, 3):
                assert org.add_slots("agent_slots", n).status_code == 200
            if rng.random() < 0.25:  # its renewals will be declined, and retried by the runs
                assert set_card(org, DECLINED_CARD).status_code == 200
        to = pair.store.now() + timedelta(days=rng.randint(28, 95), hours=rng.randint(0, 23))
        due = pair.store.renewals_due(to)
        before = pair.store.scalar("select count(*) from invoices where kind = 'renewal'")
        attempts_before = pair.store.scalar("select sum(attempt_count) from invoices")
        pair.store.set_clock(to)

        responses = race(pair, [lambda c: c.post("/v1/operator/billing/run", headers=operator)] * 8)

        renewed = [i for r in responses for i in r.json()["renewed"]]
        assert len(renewed) == len(set(renewed)) == due  # each due period renewed once, by one of the runs
        assert pair.store.scalar("select count(*) from invoices where kind = 'renewal'") - before == due
        assert pair.store.scalar("select count(*) from subscriptions where status in ('active', 'past_due') "
                                 "and period_end <= :to", to=to) == 0
        retried = [i for r in responses for key in ("retried_paid", "retried_failed") for i in r.json()[key]]
        attempts = pair.store.scalar("select sum(attempt_count) from invoices") - attempts_before
        assert attempts == len(renewed) + len(retried)  # every attempt at a card is one the runs reported
        _assert_retries_follow_the_schedule(pair, to)
        pair.assert_healthy(orgs)
        record(f"race: 8 billing runs [{pair.backend}]", trials=1, violations=0, periods_billed=due)
        for org in orgs:  # back to free at the next renewal, so later trials renew only their own
            if org.summary()["subscription"]["status"] == "unpaid":
                continue  # renews nothing more until a new card; changes are refused meanwhile
            if org.capacity("agents")["renewal_slots"]:
                assert org.remove_slots("agent_slots").status_code == 200
            assert org.post("/subscription", {"plan": "free"}).status_code == 200
    result = doctor_cli(pair.url)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rate_limit_holds_across_both_servers(pair: Pair) -> None:
    org = pair.api.create_org("pro")
    responses = race(pair, [post(org.path + "/addons/agent_slots/add", {"quantity": 1}, org.token)
                            for _ in range(40)])
    assert codes(responses) == Counter({"200": 30, "rate_limited": 10})
    assert org.capacity("agents")["active_slots"] == 30
    pair.assert_healthy([org])


def test_zz_doctor_cli_passes_on_everything_the_races_left(pair: Pair) -> None:
    result = doctor_cli(pair.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violations" in result.stdout
