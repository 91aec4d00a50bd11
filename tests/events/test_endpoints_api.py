"""The operator's webhook endpoints over HTTP (SPEC §14): register, list, change, delete, rotate, and
what is refused, with which code. Secrets are shown once and never kept or logged in clear."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook

from slotwise.api.app import create_app
from slotwise.catalog import load_catalog
from slotwise.clock import SimulatedClock
from slotwise.config import Settings
from slotwise.gateway import SandboxGateway
from slotwise.services.events import EVENT_TYPES
from tests.conftest import OPERATOR_KEY
from tests.factories import Api

BASE = "/v1/operator/webhook-endpoints"


def call(api: Api, method: str, path: str = "", body: Any = None, **params: Any) -> Any:
    return api.client.request(method, BASE + path, json=body, params=params or None,
                              headers=api.bearer(OPERATOR_KEY))


def register(api: Api, url: str = "https://hooks.example.test/slotwise", **extra: Any) -> dict[str, Any]:
    response = call(api, "POST", body={"url": url, **extra})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


class TestRegister:
    def test_the_secret_is_shown_once_in_the_standard_webhooks_format(self, api: Api) -> None:
        made = register(api, events=["credits.low", "pass.created", "credits.low"], description="Platform")
        assert made["secret"].startswith("whsec_") and len(Webhook(made["secret"])._whsecret) == 32
        assert made["events"] == ["credits.low", "pass.created"] and made["enabled"] is True
        assert made["description"] == "Platform" and made["disabled_reason"] is None
        got = call(api, "GET", f"/{made['id']}").json()
        assert "secret" not in got and got == {k: v for k, v in made.items() if k != "secret"}
        listed = call(api, "GET").json()
        assert [e["id"] for e in listed["data"]] == [made["id"]] and "secret" not in listed["data"][0]

    def test_every_type_when_events_are_left_out(self, api: Api) -> None:
        assert register(api)["events"] is None

    def test_a_url_must_be_http_or_https_and_not_too_long(self, api: Api) -> None:
        for url in ["ftp://example.test/x", "example.test/hook", "https://", "http://a b/", "https://example.test:99999/",
                    "javascript:alert(1)", "http://example.test/\x00"]:
            response = call(api, "POST", body={"url": url})
            assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_url", url
        too_long = call(api, "POST", body={"url": "https://example.test/" + "x" * 1990})
        assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "invalid_request"
        assert call(api, "GET").json()["data"] == []

    def test_unknown_event_types_are_refused_by_name(self, api: Api) -> None:
        response = call(api, "POST", body={"url": "https://example.test/h", "events": ["credits.low", "nope.x"]})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "unknown_event_type" and error["unknown"] == ["nope.x"]
        assert error["known"] == list(EVENT_TYPES)
        empty = call(api, "POST", body={"url": "https://example.test/h", "events": []})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "unknown_event_type"

    def test_without_a_secret_key_nothing_is_registered(self, settings: Settings, engine: Engine,
                                                        clock: SimulatedClock) -> None:
        app = create_app(replace(settings, secret_key=None), engine=engine, clock=clock, gateway=SandboxGateway(),
                         catalog=load_catalog())
        with TestClient(app) as client:
            response = client.post(BASE, json={"url": "https://example.test/h"},
                                   headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        assert response.status_code == 409 and response.json()["error"]["code"] == "secret_key_missing"
        with engine.connect() as conn:
            assert conn.scalar(text("select count(*) from webhook_endpoints")) == 0

    @pytest.mark.parametrize("token", [None, "not-the-key"])
    def test_only_the_operator_key_opens_them(self, api: Api, token: str | None) -> None:
        made = register(api)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        for method, path in [("GET", ""), ("POST", ""), ("GET", f"/{made['id']}"), ("DELETE", f"/{made['id']}"),
                             ("POST", f"/{made['id']}/rotate-secret"), ("GET", f"/{made['id']}/deliveries")]:
            response = api.client.request(method, BASE + path, json={"url": "https://x.test/"}, headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
        assert call(api, "GET", f"/{made['id']}").status_code == 200


class TestSecretsAtRest:
    def test_no_secret_is_stored_or_logged_in_clear(self, api: Api, engine: Engine,
                                                    caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        made = register(api)
        rotated = call(api, "POST", f"/{made['id']}/rotate-secret").json()["secret"]
        secrets = [made["secret"], rotated]
        raw = {s.removeprefix("whsec_") for s in secrets}
        with engine.connect() as conn:
            rows = conn.execute(text("select * from webhook_endpoints")).all()
        stored = " ".join(str(value) for row in rows for value in row)
        assert not any(s in stored for s in {*secrets, *raw})
        assert not any(s in caplog.text for s in secrets)


class TestChange:
    def test_list_pages_oldest_first(self, api: Api) -> None:
        ids = [register(api, f"https://example.test/{n}")["id"] for n in range(3)]
        first = call(api, "GET", limit=2).json()
        assert [e["id"] for e in first["data"]] == ids[:2] and first["has_more"]
        rest = call(api, "GET", limit=2, starting_after=ids[1]).json()
        assert [e["id"] for e in rest["data"]] == ids[2:] and not rest["has_more"]
        bad = call(api, "GET", starting_after="whe_nope")
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"

    def test_patch_changes_only_what_is_sent(self, api: Api) -> None:
        made = register(api, events=["credits.low"], description="A")
        changed = call(api, "PATCH", f"/{made['id']}", {"url": "http://example.test/new"}).json()
        assert changed["url"] == "http://example.test/new" and changed["events"] == ["credits.low"]
        assert changed["description"] == "A"
        assert call(api, "PATCH", f"/{made['id']}", {"events": None}).json()["events"] is None
        wrong = call(api, "PATCH", f"/{made['id']}", {"events": ["credits.lo"]})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "unknown_event_type"
        bad_url = call(api, "PATCH", f"/{made['id']}", {"url": "mailto:x@example.test"})
        assert bad_url.status_code == 422 and bad_url.json()["error"]["code"] == "invalid_url"

    def test_disabling_says_why_and_enabling_clears_it(self, api: Api) -> None:
        made = register(api)
        off = call(api, "PATCH", f"/{made['id']}", {"enabled": False}).json()
        assert off["enabled"] is False and off["disabled_reason"] == "Disabled by the operator."
        test = call(api, "POST", f"/{made['id']}/test")
        assert test.status_code == 409 and test.json()["error"]["code"] == "endpoint_disabled"
        on = call(api, "PATCH", f"/{made['id']}", {"enabled": True}).json()
        assert on["enabled"] is True and on["disabled_reason"] is None

    def test_unknown_ids_are_not_found(self, api: Api) -> None:
        made = register(api)
        for method, path in [("GET", "/whe_nope"), ("PATCH", "/whe_nope"), ("DELETE", "/whe_nope"),
                             ("POST", "/whe_nope/rotate-secret"), ("POST", "/whe_nope/test"),
                             ("GET", "/whe_nope/deliveries"), ("POST", "/whe_nope/deliveries/whd_x/replay"),
                             ("POST", f"/{made['id']}/deliveries/whd_nope/replay")]:
            response = call(api, method, path, {} if method == "PATCH" else None)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", (method, path)

    def test_delete_removes_it(self, api: Api) -> None:
        made = register(api)
        assert call(api, "POST", f"/{made['id']}/test").status_code == 202
        assert call(api, "DELETE", f"/{made['id']}").status_code == 204
        assert call(api, "GET", f"/{made['id']}").status_code == 404
        assert call(api, "GET").json()["data"] == []

    def test_rotation_keeps_the_old_secret_for_a_day(self, api: Api) -> None:
        made = register(api)
        rotated = call(api, "POST", f"/{made['id']}/rotate-secret").json()
        assert rotated["secret"] != made["secret"] and rotated["secret"].startswith("whsec_")
        assert rotated["previous_secret_until"] is not None
