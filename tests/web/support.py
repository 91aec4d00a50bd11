"""A live slotwise server for browser tests and screenshots, and helpers to seed it.

One uvicorn server runs in a background thread for the whole session; each test swaps in a fresh
app over its own SQLite file and simulated clock, so tests never share data or time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from slotwise.api.app import create_app
from slotwise.api.deps import AppState
from slotwise.catalog import Activity, Model, load_catalog
from slotwise.clock import SimulatedClock, wall_now
from slotwise.config import Settings, parse_instant
from slotwise.db import make_engine, transaction
from slotwise.gateway import SandboxGateway
from slotwise.models import Base
from slotwise.services import addons, agents, members, organizations, renewals, topups
from slotwise.services.context import Actor, Role
from slotwise.services.spend import SpendRequest, spend

START = datetime(2026, 11, 15, 9, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery"
OPERATOR_KEY = "web-test-operator-key"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
T = TypeVar("T")


class SwappableApp:
    """The ASGI app uvicorn serves: forwards to whichever slotwise app the current test installed."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "no app installed"
        await self.app(scope, receive, send)


class LiveServer:
    def __init__(self) -> None:
        self.target = SwappableApp()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.target, lifespan="off", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@dataclass
class SeededOrg:
    id: str
    name: str
    owner_id: str
    owner_email: str

    @property
    def owner(self) -> Actor:
        return Actor(self.owner_id, self.id, "owner")


class World:
    """One test's slotwise: a fresh SQLite database, a simulated clock at ``START``, the sandbox card gateway."""

    _count = 0

    def __init__(self, server: LiveServer, folder: Path) -> None:
        url = f"sqlite:///{folder / 'web.db'}"
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        settings = Settings(database_url=url, operator_key=OPERATOR_KEY, catalog_path=None, clock="simulated",
                            clock_start=START, secure_cookies=False)
        self.app = create_app(settings, engine=self.engine, clock=SimulatedClock(START),
                              gateway=SandboxGateway(), catalog=load_catalog())
        self.state: AppState = self.app.state.slotwise
        self.url = server.url
        server.target.app = self.app

    def close(self) -> None:
        self.engine.dispose()

    def run(self, action: Callable[[Session, datetime], T]) -> T:
        """Do something through the services in one transaction, at the simulated clock's time."""
        with transaction(self.state.sessions) as db:
            return action(db, self.state.clock.now(db))

    def _email(self, who: str) -> str:
        World._count += 1
        return f"{who}{World._count}@example.test"

    def org(self, plan: str = "pro", *, name: str = "Acme Robotics", agents_count: int = 0,
            owner_name: str = "Olivia Owner") -> SeededOrg:
        email = self._email("owner")

        def create(db: Session, at: datetime) -> SeededOrg:
            made = organizations.create_organization(
                db, env=self.state.env, name=name, owner_email=email, owner_name=owner_name,
                owner_password=PASSWORD, plan_code=plan, card_number=None, at=at)
            return SeededOrg(made.organization.id, name, made.owner.user.id, email)

        org = self.run(create)
        self.agents(org, agents_count)
        return org

    def agents(self, org: SeededOrg, count: int, prefix: str = "Agent") -> None:
        def create(db: Session, at: datetime) -> None:
            for n in range(count):
                agents.create_agent(db, env=self.state.env, actor=org.owner, name=f"{prefix} {n + 1}", at=at)

        self.run(create)

    def named_agents(self, org: SeededOrg, names: list[str]) -> None:
        def create(db: Session, at: datetime) -> None:
            for name in names:
                agents.create_agent(db, env=self.state.env, actor=org.owner, name=name, at=at)

        self.run(create)

    def member(self, org: SeededOrg, role: Role = "member", name: str = "Max Member") -> str:
        email = self._email(role)
        self.run(lambda db, at: organizations.add_user(
            db, env=self.state.env, org_id=org.id, email=email, name=name, password=PASSWORD, role=role, at=at))
        return email

    def invite(self, org: SeededOrg, email: str) -> None:
        self.run(lambda db, at: members.invite(db, env=self.state.env, actor=org.owner, email=email,
                                               role="member", at=at))

    def add_slots(self, org: SeededOrg, addon: str, quantity: int) -> None:
        self.run(lambda db, at: addons.add_slots(db, env=self.state.env, actor=org.owner, addon_code=addon,
                                                 quantity=quantity, at=at))

    def remove_slots(self, org: SeededOrg, addon: str, quantity: int) -> None:
        self.run(lambda db, at: addons.remove_slots(db, env=self.state.env, actor=org.owner, addon_code=addon,
                                                    quantity=quantity, at=at))

    def spend(self, org: SeededOrg, units: int, activity: Activity = "message", model: Model = "standard",
              agent_id: str | None = None) -> None:
        """A real credit spend (``services.spend``), as the platform's backend makes one per answer."""
        World._count += 1
        request = SpendRequest(activity=activity, model=model, units=units, agent_id=agent_id,
                               reference=f"ans_web_{World._count}")
        self.run(lambda db, at: spend(db.connection(), terms=self.state.env.catalog.credits, org_id=org.id,
                                      request=request, at=at, wall_now=wall_now()))

    def top_up(self, org: SeededOrg, packs: int) -> None:
        self.run(lambda db, at: topups.top_up(db, env=self.state.env, actor=org.owner, packs=packs, at=at))

    def clock_to(self, when: str) -> None:
        renewals.advance_clock(self.state.sessions, env=self.state.env, clock=self.state.clock,
                               to=parse_instant(when))
