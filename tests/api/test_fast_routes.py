"""The fast routes (api/fastroutes.py) answer exactly as the general routes do.

On PostgreSQL, ``FastRoutes`` answers reading an organization, creating an agent and spending credits
ahead of FastAPI; whatever it does not take (a body that is not valid JSON, another content type)
passes through to the general route. The same requests on SQLite, where every route is general,
must get the same answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from tests.factories import Api, error_of
from tests.test_round_trips import counted_over_http


@pytest.fixture
def org(api: Api) -> Any:
    made = api.create_org("business")
    made.summary()  # the simulated clock's row exists, as in any running system
    return made


def _raw_post(api: Api, path: str, content: bytes, token: str, content_type: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post(path, content=content, headers=headers)


class TestBodiesTheLaneDoesNotTake:
    def test_json_without_a_content_type_is_refused_as_the_general_route_does(self, api: Api, org: Any) -> None:
        for content_type in (None, "text/plain"):
            error_of(_raw_post(api, f"{org.path}/agents", b'{"name": "Untyped"}', org.token, content_type),
                     422, "invalid_request")
        assert org.items("/agents") == []
        made = _raw_post(api, f"{org.path}/agents", b'{"name": "Typed"}', org.token, "application/json; charset=utf-8")
        assert made.status_code == 201, made.text

    def test_malformed_json_is_invalid_request(self, api: Api, org: Any) -> None:
        error_of(_raw_post(api, f"{org.path}/agents", b'{"name": ', org.token, "application/json"),
                 422, "invalid_request")
        assert org.items("/agents") == []

    def test_a_missing_field_names_the_field(self, api: Api, org: Any) -> None:
        error = error_of(_raw_post(api, f"{org.path}/credits/spend", b'{"activity": "tool"}', org.token,
                                  "application/json"), 422, "invalid_request")
        assert ["body", "reference"] in [e["loc"] for e in error["errors"]]

    def test_an_invalid_body_sends_no_statement_on_the_lane(self, api: Api, org: Any, engine: Engine) -> None:
        with counted_over_http(api, engine) as sent:
            _raw_post(api, f"{org.path}/agents", b'{"name": 5}', org.token, "application/json")
        assert not any("INSERT INTO agents" in statement for statement in sent), sent


class TestRefusals:
    def test_no_token_an_unknown_token_and_another_organization(self, api: Api, org: Any) -> None:
        other = api.create_org("business")
        error_of(api.client.get(org.path), 401, "unauthenticated")
        error_of(org.get(token="not-a-token"), 401, "unauthenticated")
        error_of(org.get(token=other.token), 404, "not_found")
        error_of(org.post("/agents", {"name": "Sneaky"}, token=other.token), 404, "not_found")
        error_of(org.post("/credits/spend", {"activity": "tool", "reference": "x"}, token=other.token),
                 404, "not_found")
        assert other.items("/agents") == [] and org.items("/agents") == []

    def test_an_id_with_a_control_character_is_not_found(self, api: Api, org: Any) -> None:
        error_of(api.client.get("/v1/organizations/org%00x", headers=api.bearer(org.token)), 404, "not_found")
        error_of(api.client.post("/v1/organizations/org%01x/agents", json={"name": "A"},
                                 headers=api.bearer(org.token)), 404, "not_found")
