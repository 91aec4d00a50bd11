"""Settings, all from ``SLOTWISE_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

# SLOTWISE_CONCURRENCY: how many requests one server process works on at once. It sizes, together,
# everything a request in flight holds, so that none of them can run out while another waits:
#   - the admission limit (api/admission.py): N requests in the app, 4 × N more waiting in a queue
#     that costs no thread; beyond that, or after a few seconds in the queue, 503 + Retry-After;
#   - the database connection pool (db.make_engine): N connections, no overflow, a short checkout
#     timeout (a request uses one connection at a time, so N requests never wait for one);
#   - the worker threads (at least N), since each request runs its sync parts on one thread at a time.
# A connection pool smaller than the thread pool is what made floods stall: threads blocked on a
# checkout while the holders of every connection waited for a thread. The default suits a 2-core
# machine; raise it with the cores (and the database's max_connections: N per server process).
DEFAULT_CONCURRENCY = 8


def normalize_database_url(url: str) -> str:
    """Accept plain ``sqlite:///path`` and ``postgresql://…`` URLs and pick the driver ourselves."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def parse_instant(text: str) -> datetime:
    """ISO 8601 to an aware UTC datetime; a date alone means midnight UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    operator_key: str | None
    catalog_path: str | None
    clock: str  # "system" | "simulated"
    clock_start: datetime | None
    secure_cookies: bool
    quantity_changes_per_hour: int = 30
    concurrency: int = DEFAULT_CONCURRENCY  # SLOTWISE_CONCURRENCY, see above
    # SLOTWISE_WORKER (on unless 0): the server runs a job worker in each process (slotwise.worker).
    # Off for settings made in code (tests drive their workers themselves).
    run_worker: bool = False
    # The card processor (slotwise.gateway.factory): SLOTWISE_GATEWAY=sandbox (the embedded default)
    # or stripe, which needs SLOTWISE_STRIPE_SECRET_KEY; SLOTWISE_STRIPE_PUBLISHABLE_KEY goes to the
    # card page, SLOTWISE_STRIPE_WEBHOOK_SECRET verifies POST /webhooks/stripe (unset: every webhook is
    # refused), SLOTWISE_STRIPE_API_BASE points the library at a local fake Stripe. Secrets stay out of repr.
    gateway: str = "sandbox"
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    # SLOTWISE_SECRET_KEY seals the webhook endpoints' signing secrets at rest (services/webhook_secrets.py):
    # at least 32 characters; several, comma-separated, to rotate it (the first seals, any opens). Unset:
    # nothing is derived from anything else; registering or rotating an endpoint is refused (409
    # ``secret_key_missing``) and the worker sends no webhooks.
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        start = e.get("SLOTWISE_CLOCK_START")
        clock = e.get("SLOTWISE_CLOCK", "system").lower()
        if clock not in ("system", "simulated"):
            raise ValueError("SLOTWISE_CLOCK must be 'system' or 'simulated'")
        return cls(
            database_url=normalize_database_url(
                e.get("SLOTWISE_DATABASE_URL", "sqlite:///slotwise.db")
            ),
            operator_key=e.get("SLOTWISE_OPERATOR_KEY") or None,
            catalog_path=e.get("SLOTWISE_CATALOG") or None,
            clock=clock,
            clock_start=parse_instant(start) if start else None,
            secure_cookies=e.get("SLOTWISE_SECURE_COOKIES", "").lower() in ("1", "true", "yes"),
            quantity_changes_per_hour=int(e.get("SLOTWISE_QUANTITY_CHANGES_PER_HOUR") or 30),
            concurrency=_concurrency(e.get("SLOTWISE_CONCURRENCY")),
            run_worker=e.get("SLOTWISE_WORKER", "1").strip().lower() not in ("0", "false", "no", "off"),
            gateway=_gateway(e),
            stripe_secret_key=e.get("SLOTWISE_STRIPE_SECRET_KEY") or None,
            stripe_publishable_key=e.get("SLOTWISE_STRIPE_PUBLISHABLE_KEY") or None,
            stripe_webhook_secret=e.get("SLOTWISE_STRIPE_WEBHOOK_SECRET") or None,
            stripe_api_base=e.get("SLOTWISE_STRIPE_API_BASE") or None,
            secret_key=secret_key_from(e),
        )


MIN_SECRET_KEY_LENGTH = 32


def secret_key_from(e: dict[str, str]) -> str | None:
    """SLOTWISE_SECRET_KEY, refused at start-up if any of its comma-separated keys is too short to seal with."""
    value = (e.get("SLOTWISE_SECRET_KEY") or "").strip()
    if not value:
        return None
    if any(len(key.strip()) < MIN_SECRET_KEY_LENGTH for key in value.split(",")):
        raise ValueError(f"SLOTWISE_SECRET_KEY: each key must be at least {MIN_SECRET_KEY_LENGTH} characters "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return value


def _concurrency(text: str | None) -> int:
    if not text:
        return DEFAULT_CONCURRENCY
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError("SLOTWISE_CONCURRENCY must be a whole number of at least 1")
    return int(text)


def _gateway(e: dict[str, str]) -> str:
    """Refuse at start-up what would only fail at the first charge."""
    name = (e.get("SLOTWISE_GATEWAY") or "sandbox").strip().lower()
    if name not in ("sandbox", "stripe"):
        raise ValueError("SLOTWISE_GATEWAY must be 'sandbox' or 'stripe'")
    if name == "stripe" and not e.get("SLOTWISE_STRIPE_SECRET_KEY"):
        raise ValueError("SLOTWISE_GATEWAY=stripe needs SLOTWISE_STRIPE_SECRET_KEY (sk_live_… or sk_test_…)")
    return name
