"""Invitation tokens (in URL paths) never reach the access log in clear."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.factories import Api


def test_the_access_log_redacts_invitation_tokens(api: Api, client: TestClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    org = api.create_org("pro")
    token = org.post("/invitations", {"email": "new@example.test", "role": "member"}).json()["token"]
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        # What uvicorn logs for a request: client, method, path, HTTP version, status.
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST",
                    f"/v1/invitations/{token}/accept", "1.1", 201)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/invitations/{token}?x=1", "1.1", 200)
    logged = caplog.text
    assert token not in logged
    assert logged.count("/invitations/[redacted]") == 2
