"""Every refused sign-in costs one argon2 verification, whatever the account (none, no password, a
wrong password), so the answer's time tells nothing about which accounts exist; SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from slotwise import security
from tests.factories import Api
from tests.web.conftest import CountingHasher
from tests.web.test_sessions import PASSWORD, login, make_org


class TestEveryRefusalCostsAVerification:
    def test_an_account_without_a_password(self, api: Api, client: TestClient, hasher: CountingHasher) -> None:
        made = api.operator("/organizations", {"name": "Acme", "owner_email": "nopass@acme.test"})
        assert made.status_code == 201, made.text
        response = login(client, "nopass@acme.test", "any-password-at-all")
        assert response.status_code == 401
        assert hasher.verifications == 1

    def test_an_unknown_email_and_a_wrong_password(self, api: Api, client: TestClient,
                                                   hasher: CountingHasher) -> None:
        make_org(api)
        assert login(client, "nobody@acme.test", PASSWORD).status_code == 401
        assert login(client, "owner@acme.test", "wrong-password").status_code == 401
        assert hasher.verifications == 2

    def test_verify_password_without_a_hash_still_verifies(self, hasher: CountingHasher) -> None:
        assert security.verify_password(None, "whatever") is False
        assert security.verify_password("", "not-a-real-password") is False  # the dummy's own password
        assert hasher.verifications == 2
