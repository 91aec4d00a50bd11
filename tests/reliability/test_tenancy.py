"""Tenant isolation and roles: every organization-scoped API route (enumerated from the app, so a
new route fails here until it is given a rule) × {owner, admin, member, another organization's
owner, no token, bad token}, plus another organization's owner pointing their own ``{org}`` at this
organization's ids. Each cell asserts the exact status and error code, and every refused call must
leave the organization exactly as it was.

The rules, as the services implement them (SPEC §2, §4, §6):
* ``owner``: billing changes (add-ons, plan, card, and the add-on preview) are Owner Only:
  admin and member get 403 ``owner_only``.
* ``manager``: inviting, revoking invitations and removing members: the owner and admins; a member
  gets 403 ``forbidden``.
* ``billing_reader``: invoices are read by the owner and admins; a member gets 403 ``forbidden``.
* ``any``: every member of the organization (reading it, its add-ons, agents, members and
  invitations; creating, archiving and deleting agents).
Always: no or a bad token → 401 ``unauthenticated``; another organization → 404 ``not_found``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from starlette.routing import BaseRoute

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.gateway import SandboxGateway
from slotwise.models import Job, ProcessorEvent
from tests.conftest import OPERATOR_KEY
from tests.factories import Api, Org, invite

ORG_PREFIX = "/v1/organizations/{org}"
ROLES = ("no_token", "bad_token", "other_owner", "member", "admin", "owner")  # refusals first


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods):
                yield method, prefix + route.path
        inner = getattr(route, "original_router", None)  # FastAPI ≥ 0.120 wraps included routers
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + getattr(context, "prefix", ""))


APP_ROUTES = sorted(set(_walk(create_app(Settings(
    database_url="sqlite://", operator_key="k", catalog_path=None, clock="simulated", clock_start=None,
    secure_cookies=False)).routes)))
ORG_ROUTES = [(m, p) for m, p in APP_ROUTES if p.startswith(ORG_PREFIX)]


@dataclass
class World:
    """A Pro organization with something behind every id a route can take."""

    org: Org
    admin: str
    member: str
    other: Org  # another organization
    ids: dict[str, str]  # path parameter → an id of this organization


def build_world(api: Api) -> World:
    org = api.create_org("pro")
    assert org.add_slots("agent_slots", 2).status_code == 200
    assert org.remove_slots("agent_slots", 1).status_code == 200  # a scheduled removal, for keep
    assert org.add_slots("member_slots", 3).status_code == 200
    active, archived = org.create_agents(2)
    assert org.post(f"/agents/{archived}/archive").status_code == 200
    admin, member = api.add_user(org.id, role="admin"), api.add_user(org.id, role="member")
    removable = api.add_user(org.id, role="member")
    invitation = invite(org).json()["id"]
    invoice = org.invoices()[0]["id"]
    [paid] = org.create_agents(1)  # sold to a visitor: a pass to refund
    assert api.client.put(f"{org.path}/agents/{paid}/access", headers=api.bearer(org.token), json={
        "mode": "paid", "paid": {"price": 500, "currency": "usd", "access_days": 7, "message_credits": 5}},
    ).status_code == 200
    bought = api.client.post(f"/v1/agents/{paid}/checkout", json={
        "email": "visitor@example.test", "card_number": "4242424242424242", "checkout": "matrix"})
    assert bought.status_code == 201, bought.text
    ids = {"agent_id": active, "archived_agent_id": archived, "user_id": removable["id"],
           "invitation_id": invitation, "invoice_id": invoice, "code": "agent_slots", "org": org.id,
           "pass_id": bought.json()["pass"]["id"]}
    return World(org, admin["api_token"], member["api_token"], api.create_org("pro"), ids)


@dataclass(frozen=True)
class Rule:
    who: str  # owner | manager | billing_reader | any
    ok: int  # the owner's status
    body: dict[str, Any] | None = None
    agent: str = "agent_id"  # which agent the route acts on
    code: str | None = None  # the owner's error code, where the owner is refused for another reason


RULES: dict[tuple[str, str], Rule] = {
    ("GET", ORG_PREFIX): Rule("any", 200),
    ("POST", ORG_PREFIX + "/subscription"): Rule("owner", 200, {"plan": "business"}),
    ("PUT", ORG_PREFIX + "/payment-method"): Rule("owner", 200, {"card_number": "4242424242424242"}),
    ("POST", ORG_PREFIX + "/checkout"): Rule("owner", 200, {"plan": "business"}),
    ("GET", ORG_PREFIX + "/invoices"): Rule("billing_reader", 200),
    ("GET", ORG_PREFIX + "/invoices/{invoice_id}"): Rule("billing_reader", 200),
    # The billing portal (SPEC §12): read like invoices, changed by the Owner. This organization uses more
    # than Free allows, so its Owner's cancel is refused below_usage, and there is nothing to resume.
    ("GET", ORG_PREFIX + "/invoices/{invoice_id}/pdf"): Rule("billing_reader", 200),
    # Bank verification (SCA): the Owner's; an invoice already paid is answered as it is.
    ("POST", ORG_PREFIX + "/invoices/{invoice_id}/verify"): Rule("owner", 200, {"verdict": "approve"}),
    ("GET", ORG_PREFIX + "/billing-details"): Rule("billing_reader", 200),
    ("PUT", ORG_PREFIX + "/billing-details"): Rule("owner", 200, {"email": "billing@example.test", "company": "",
                                                                  "address": ""}),
    ("POST", ORG_PREFIX + "/subscription/cancel"): Rule("owner", 409, code="below_usage"),
    ("POST", ORG_PREFIX + "/subscription/resume"): Rule("owner", 409, code="cancellation_not_scheduled"),
    ("GET", ORG_PREFIX + "/addons"): Rule("any", 200),
    ("POST", ORG_PREFIX + "/addons/{code}/preview"): Rule("owner", 200, {"action": "add", "quantity": 1}),
    ("POST", ORG_PREFIX + "/addons/{code}/add"): Rule("owner", 200, {"quantity": 1}),
    ("POST", ORG_PREFIX + "/addons/{code}/remove"): Rule("owner", 200, {"quantity": 1}),
    ("POST", ORG_PREFIX + "/addons/{code}/keep"): Rule("owner", 200),
    ("GET", ORG_PREFIX + "/agents"): Rule("any", 200),
    ("POST", ORG_PREFIX + "/agents"): Rule("any", 201, {"name": "Matrix agent"}),
    ("POST", ORG_PREFIX + "/agents/{agent_id}/archive"): Rule("any", 200),
    ("POST", ORG_PREFIX + "/agents/{agent_id}/unarchive"): Rule("any", 200, agent="archived_agent_id"),
    ("DELETE", ORG_PREFIX + "/agents/{agent_id}"): Rule("any", 204),
    ("GET", ORG_PREFIX + "/members"): Rule("any", 200),
    ("DELETE", ORG_PREFIX + "/members/{user_id}"): Rule("manager", 204),
    ("GET", ORG_PREFIX + "/invitations"): Rule("any", 200),
    ("POST", ORG_PREFIX + "/invitations"): Rule("manager", 201, {"email": "matrix@example.test"}),
    ("DELETE", ORG_PREFIX + "/invitations/{invitation_id}"): Rule("manager", 204),
    # Credits (SPEC §11): read by any member; Top Up Now and auto-recharge are Owner Only.
    ("GET", ORG_PREFIX + "/credits"): Rule("any", 200),
    ("POST", ORG_PREFIX + "/credits/top-up"): Rule("owner", 201, {"packs": 1}),
    ("PUT", ORG_PREFIX + "/credits/auto-recharge"): Rule("owner", 200, {"enabled": False}),
    ("GET", ORG_PREFIX + "/usage"): Rule("any", 200),
    # Any member (and the operator key): the platform's backend spends for every answer (SPEC §11).
    ("POST", ORG_PREFIX + "/credits/spend"): Rule("any", 200, {"activity": "tool", "reference": "matrix",
                                                               "playground": True}),
    # Paid agents (SPEC §13): anyone reads an agent's mode; the Owner and Admins set it and add contacts;
    # contacts, passes and revenue (visitors' emails, the money) are read like invoices; refunds are the Owner's.
    ("GET", ORG_PREFIX + "/agents/{agent_id}/access"): Rule("any", 200),
    ("PUT", ORG_PREFIX + "/agents/{agent_id}/access"): Rule("manager", 200, {"mode": "restricted"}),
    ("GET", ORG_PREFIX + "/contacts"): Rule("billing_reader", 200),
    ("POST", ORG_PREFIX + "/contacts"): Rule("manager", 201, {"email": "contact@example.test"}),
    ("GET", ORG_PREFIX + "/passes"): Rule("billing_reader", 200),
    ("POST", ORG_PREFIX + "/passes/{pass_id}/refund"): Rule("owner", 200),
    ("GET", ORG_PREFIX + "/revenue"): Rule("billing_reader", 200),
    # The audit trail (SPEC §14) names every member's changes and every amount: the Owner's alone.
    ("GET", ORG_PREFIX + "/audit-log"): Rule("owner", 200),
}


def expected(rule: Rule, role: str) -> tuple[int, str | None]:
    if role in ("no_token", "bad_token"):
        return 401, "unauthenticated"
    if role == "other_owner":
        return 404, "not_found"
    if role == "owner" or rule.who == "any":
        return rule.ok, rule.code
    if rule.who == "owner":
        return 403, "owner_only"
    if role == "member":  # manager and billing_reader routes
        return 403, "forbidden"
    return rule.ok, rule.code  # an admin on a manager or billing_reader route


def fingerprint(world: World) -> list[Any]:
    """Everything the owner can see of the organization."""
    org = world.org
    return [org.get(suffix).json() for suffix in ("", "/addons", "/agents", "/members", "/invitations", "/invoices",
                                                  "/contacts", "/passes")]


def call(api: Api, method: str, path: str, rule: Rule, ids: dict[str, str], token: str | None) -> Any:
    values = {**ids, "agent_id": ids.get(rule.agent, ids["agent_id"])}
    url = path.format(**values)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return api.client.request(method, url, json=rule.body, headers=headers)


Cell = Callable[[World], tuple[str | None, dict[str, str]]]
CALLERS: dict[str, Cell] = {  # role → (token, ids to put in the path)
    "owner": lambda w: (w.org.token, w.ids),
    "admin": lambda w: (w.admin, w.ids),
    "member": lambda w: (w.member, w.ids),
    "other_owner": lambda w: (w.other.token, w.ids),
    "no_token": lambda w: (None, w.ids),
    "bad_token": lambda w: ("swt_not-a-real-token", w.ids),
}


def test_every_organization_route_has_a_rule() -> None:
    assert set(ORG_ROUTES) == set(RULES), "classify new organization routes in RULES (and their roles)"


@pytest.mark.parametrize(("method", "path"), ORG_ROUTES, ids=[f"{m} {p}" for m, p in ORG_ROUTES])
def test_route_answers_each_role_exactly(api: Api, method: str, path: str) -> None:
    rule = RULES[(method, path)]
    wrong = []
    world = build_world(api)
    for role in ROLES:
        status, code = expected(rule, role)
        if status < 400:  # a fresh world for each success, so none hides or alters another answer
            world = build_world(api)
        token, ids = CALLERS[role](world)
        before = fingerprint(world)
        response = call(api, method, path, rule, ids, token)
        got_code = response.json()["error"]["code"] if response.status_code >= 400 else None
        if (response.status_code, got_code) != (status, code):
            wrong.append(f"{role}: expected {status} {code}, got {response.status_code} {response.text[:160]}")
        elif status >= 400 and fingerprint(world) != before:
            wrong.append(f"{role}: refused with {status} but the organization changed")
    assert not wrong, "\n".join(wrong)


OBJECT_ROUTES = [(m, p) for m, p in ORG_ROUTES
                 if any(f"{{{name}}}" in p for name in ("agent_id", "user_id", "invitation_id", "invoice_id",
                                                        "pass_id"))]


@pytest.mark.parametrize(("method", "path"), OBJECT_ROUTES, ids=[f"{m} {p}" for m, p in OBJECT_ROUTES])
def test_another_organizations_ids_in_my_own_path_are_not_found(api: Api, method: str, path: str) -> None:
    rule = RULES[(method, path)]
    world = build_world(api)
    before = fingerprint(world)
    ids = {**world.ids, "org": world.other.id}  # my (other's) organization, this world's object ids
    response = call(api, method, path, rule, ids, world.other.token)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", response.text
    assert fingerprint(world) == before


OPERATOR_ROUTES = [(m, p) for m, p in APP_ROUTES if p.startswith("/v1/operator")]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES, ids=[f"{m} {p}" for m, p in OPERATOR_ROUTES])
@pytest.mark.parametrize("token", [None, "not-the-key", "owner"])
def test_operator_routes_need_the_operator_key(api: Api, method: str, path: str, token: str | None) -> None:
    org = api.create_org("pro")
    bearer = org.token if token == "owner" else token
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    # The webhook endpoints' routes (SPEC §14) name an endpoint or a delivery: any id, the key is checked first.
    url = path.format(org=org.id, endpoint_id="whe_tenancy", delivery_id="whd_tenancy")
    response = api.client.request(method, url, json={}, headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated", response.text


# The platform's routes about one agent (SPEC §13): the access check and the visitor message need the
# operator key; the paywall and its purchase are public (a visitor has no slotwise login).
AGENT_ROUTES = [(m, p) for m, p in APP_ROUTES if p.startswith("/v1/agents/")]


def test_the_agent_routes_are_the_known_ones() -> None:
    assert AGENT_ROUTES == [("GET", "/v1/agents/{agent_id}/paywall"), ("POST", "/v1/agents/{agent_id}/access"),
                            ("POST", "/v1/agents/{agent_id}/checkout"),
                            ("POST", "/v1/agents/{agent_id}/checkout/verify"),
                            ("POST", "/v1/agents/{agent_id}/messages")]


@pytest.mark.parametrize("path", ["/v1/agents/{agent}/access", "/v1/agents/{agent}/messages"])
@pytest.mark.parametrize("token", [None, "not-the-key", "owner"])
def test_the_access_check_and_messages_need_the_operator_key(api: Api, path: str, token: str | None) -> None:
    org = api.create_org("pro")
    [agent] = org.create_agents(1)
    bearer = org.token if token == "owner" else token
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    response = api.client.post(path.format(agent=agent), json={"visitor_email": "v@example.test",
                                                               "reference": "r"}, headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated", response.text


# The processor's webhooks are public: no bearer token, no organization in the path. The signature
# over the raw body is their only authentication, so no credential of ours may stand in for it.
WEBHOOK_ROUTES = [(m, p) for m, p in APP_ROUTES if p.startswith("/webhooks/")]


def test_the_webhook_routes_are_the_known_ones() -> None:
    assert WEBHOOK_ROUTES == [("POST", "/webhooks/stripe")], "classify new public webhook routes here"


@pytest.mark.parametrize("token", [None, "not-the-key", "owner", "operator"])
def test_no_credential_of_ours_authenticates_a_webhook(
    settings: Settings, engine: Engine, clock: SimulatedClock, token: str | None
) -> None:
    app = create_app(settings, engine=engine, clock=clock, gateway=SandboxGateway(webhook_secret="whsec_tenancy"),
                     catalog=load_catalog())
    with TestClient(app) as client:
        api = Api(client, OPERATOR_KEY)
        org = api.create_org("pro")
        bearer = {"owner": org.token, "operator": OPERATOR_KEY}.get(token or "", token)
        headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
        body = {"id": "evt_tenancy", "type": "payment_intent.succeeded",
                "data": {"object": {"id": "pi_1", "metadata": {"slotwise_org_id": org.id}}}}
        response = client.post("/webhooks/stripe", json=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "webhook_rejected", response.text
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ProcessorEvent)) == 0
        assert conn.scalar(select(func.count()).select_from(Job)) == 0
