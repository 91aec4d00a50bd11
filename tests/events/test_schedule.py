"""The retry schedule and Retry-After, as pure functions (no database, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slotwise.services.webhook_delivery import (
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER,
    RETRY_DELAYS,
    Outcome,
    next_delay,
    retry_after,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def failed(after: timedelta | None = None) -> Outcome:
    return Outcome(503, 5, None, None, after)


def test_the_standard_webhooks_schedule_over_about_a_day() -> None:
    assert [next_delay(n, failed()) for n in range(1, MAX_ATTEMPTS)] == [
        timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
        timedelta(hours=5), timedelta(hours=10), timedelta(hours=10)]
    assert MAX_ATTEMPTS == 8 and timedelta(hours=27) < sum(RETRY_DELAYS, timedelta()) < timedelta(hours=28)


def test_a_later_retry_after_wins_up_to_its_cap_and_an_earlier_one_does_not() -> None:
    assert next_delay(1, failed(timedelta(minutes=2))) == timedelta(minutes=2)
    assert next_delay(3, failed(timedelta(minutes=2))) == timedelta(minutes=30)
    assert next_delay(1, failed(timedelta(days=30))) == MAX_RETRY_AFTER


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after("120", now=NOW) == timedelta(seconds=120)
    assert retry_after("Sat, 28 Nov 2026 12:10:00 GMT", now=NOW) == timedelta(minutes=10)
    assert retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now=NOW) == timedelta(0)
    assert retry_after("soon", now=NOW) is None and retry_after(None, now=NOW) is None
    assert retry_after("-5", now=NOW) is None
