"""The hot paths stay short transactions (SPEC §10): statements per operation are counted, not timed.

Counted at the service level on both databases, as a request runs them; BEGIN, COMMIT and
savepoints are left out (the driver sends those with or around the statements).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from slotwise.db import transaction
from slotwise.services import addons, agents, organizations
from slotwise.services.context import Actor, Env

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _owner(sessions: sessionmaker[Session], env: Env) -> Actor:
    with transaction(sessions) as db:
        made = organizations.create_organization(
            db, env=env, name="Counted", owner_email=f"counted{id(env)}@example.test", owner_name=None,
            owner_password=None, plan_code="business", card_number=None, at=datetime(2026, 11, 15, 9, tzinfo=UTC))
        return Actor(user_id=made.owner.user.id, org_id=made.organization.id, role="owner")


def _run(sessions: sessionmaker[Session], engine: Engine, action: Callable[[Session], object]) -> list[str]:
    with counted(engine) as sent, transaction(sessions) as db:
        action(db)
    return sent


def test_create_agent_is_four_statements(sessions: sessionmaker[Session], engine: Engine, env: Env) -> None:
    owner = _owner(sessions, env)
    sent = _run(sessions, engine, lambda db: agents.create_agent(db, env=env, actor=owner, name="A", at=AT))
    assert len(sent) == 4, sent  # lock, snapshot, insert, its audit entry (which reads the actor's email itself)
    assert "FOR NO KEY UPDATE" in sent[0].upper() or engine.dialect.name == "sqlite"  # repo.locked_organization


def test_add_slot_is_at_most_thirteen_and_remove_eight(sessions: sessionmaker[Session], engine: Engine,
                                                   env: Env) -> None:
    owner = _owner(sessions, env)
    for _ in range(2):  # the first purchase inserts the add-on row, the next updates it
        sent = _run(sessions, engine, lambda db: addons.add_slots(db, env=env, actor=owner, addon_code="agent_slots",
                                                                  quantity=1, at=AT))
        # eight, and what the platform and the Owner learn of it (SPEC §14): invoice.paid and addon.updated
        # (each the event and the endpoints owed it), the audit entry
        assert len(sent) <= 13, sent
    sent = _run(sessions, engine, lambda db: addons.remove_slots(db, env=env, actor=owner, addon_code="agent_slots",
                                                                 quantity=1, at=AT))
    assert len(sent) <= 8, sent  # five, and addon.updated (the event, the endpoints owed it), the audit entry


def test_reading_an_organization_is_one_statement(sessions: sessionmaker[Session], engine: Engine,
                                                  env: Env) -> None:
    owner = _owner(sessions, env)
    sent = _run(sessions, engine, lambda db: organizations.organization_summary(db, env=env, org_id=owner.org_id))
    assert len(sent) == 1, sent


@contextmanager
def counted_over_http(api: Any, engine: Engine) -> Iterator[list[str]]:
    """The statements a request sends: on PostgreSQL the hot routes run on the fast lane
    (api/fastlane.py), which keeps its own trace; elsewhere the engine's."""
    lane = api.client.app.state.slotwise.lane
    if lane is None:
        with counted(engine) as sent:
            yield sent
        return
    lane.trace = []
    with counted(engine) as general:
        try:
            yield lane.trace
        finally:
            lane.trace.extend(general)  # anything the general path sent too
            lane.trace = None


def test_over_http_a_read_is_two_statements_and_a_creation_five(api: Any, engine: Engine) -> None:
    """The caller, the time and the due-check are one statement ahead of the route's own. On
    PostgreSQL a read is one statement (caller and snapshot together), and the creation's four go in
    two round trips: BEGIN, the lock and the snapshot pipelined, then the insert, its audit entry and
    COMMIT."""
    org = api.create_org("business")
    org.summary()  # the simulated clock's row exists from here on, as in any running system
    with counted_over_http(api, engine) as sent:
        assert org.get().status_code == 200
    assert len(sent) == (1 if engine.dialect.name == "postgresql" else 2), sent  # the lane reads both at once
    with counted_over_http(api, engine) as sent:
        assert org.post("/agents", {"name": "Counted"}).status_code == 201
    assert len(sent) == 5, sent


def test_over_http_a_credit_spend_is_two_statements_and_one_on_postgresql_a_transaction_of_its_own(
        api: Any, engine: Engine) -> None:
    """The caller, then the spend: on PostgreSQL one statement (debit, ledger, usage, recharge job)
    sent in autocommit, so no BEGIN or COMMIT either; on SQLite a few local statements."""
    org = api.create_org("business")
    org.summary()
    with counted_over_http(api, engine) as sent:
        response = org.post("/credits/spend", {"activity": "tool", "reference": "counted", "playground": True})
        assert response.status_code == 200, response.text
    if engine.dialect.name == "postgresql":
        assert len(sent) == 2, sent
        assert "UPDATE credit_accounts" in sent[1]
    else:
        assert len(sent) <= 6, sent  # caller, prior reference, account, debit, ledger, usage
