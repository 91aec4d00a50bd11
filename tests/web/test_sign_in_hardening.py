"""Signing in under attack, on SQLite and PostgreSQL: concurrent guesses are counted exactly, and
text that can't be an email address is simply no account (at the cost of a real attempt)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from slotwise.models import LoginFailure
from tests.factories import Api
from tests.web.conftest import CountingHasher
from tests.web.test_sessions import COOKIE, PASSWORD, login, make_org

GUESSES = 40
EMAIL_CAP = 10


class TestConcurrentGuesses:
    def test_forty_concurrent_wrong_guesses_get_only_ten_evaluations(self, api: Api, client: TestClient) -> None:
        make_org(api)
        form = client.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found is not None
        csrf, cookies = found.group(1), dict(client.cookies)
        start = threading.Barrier(GUESSES)

        def guess(n: int) -> int:
            browser = TestClient(client.app, cookies=cookies)
            start.wait()
            for _ in range(100):  # a 503 is admission control turning the request away unseen: again
                response = browser.post("/login", data={"email": "owner@acme.test", "password": f"wrong-{n}",
                                                        "csrf_token": csrf}, follow_redirects=False)
                if response.status_code != 503:
                    break
                time.sleep(0.1)
            return response.status_code

        with ThreadPoolExecutor(GUESSES) as pool:
            statuses = Counter(pool.map(guess, range(GUESSES)))
        assert statuses == {401: EMAIL_CAP, 429: GUESSES - EMAIL_CAP}
        refused = login(client, "owner@acme.test")  # the right password, after the cap
        assert refused.status_code == 429
        assert COOKIE not in client.cookies

    def test_the_right_password_does_not_count_as_a_failure(self, api: Api, client: TestClient) -> None:
        make_org(api)
        for _ in range(EMAIL_CAP - 1):
            assert login(client, "owner@acme.test", "wrong-password").status_code == 401
        for _ in range(3):
            assert login(client, "owner@acme.test").status_code == 303
        assert login(client, "owner@acme.test", "wrong-password").status_code == 401
        assert login(client, "owner@acme.test").status_code == 429


class TestTextThatIsNoEmail:
    @pytest.mark.parametrize("email", ["a\x00b", "owner@acme.test\x00", "x" * 5000, "no-at-sign"])
    def test_is_no_account_yet_costs_a_verification_and_a_failure(
        self, email: str, api: Api, client: TestClient, sessions: sessionmaker[Session], hasher: CountingHasher
    ) -> None:
        make_org(api)
        response = login(client, email)
        assert response.status_code == 401
        assert "That email and password don&#39;t match an account." in response.text
        assert COOKIE not in client.cookies
        assert hasher.verifications == 1
        with sessions() as db:
            keys = db.scalars(select(LoginFailure.key)).all()
        assert len(keys) == 2 and all(len(k) <= 400 and "\x00" not in k for k in keys)

    def test_nul_text_is_counted_toward_the_limit(self, api: Api, client: TestClient) -> None:
        make_org(api)
        for _ in range(EMAIL_CAP):
            assert login(client, "a\x00b", PASSWORD).status_code == 401
        assert login(client, "a\x00b", PASSWORD).status_code == 429
        assert login(client, "owner@acme.test").status_code == 303
