"""Hostile input: every operation of the OpenAPI document, fuzzed by schemathesis (valid and invalid
data), must never answer 5xx and must answer within its documented statuses and schemas. Bodies that
are too large, deeply nested or of the wrong type get a clear 4xx and change nothing.

The calls carry real credentials (the operator key on operator routes, an Owner's token elsewhere)
and the ``{org}`` of a real organization, so the fuzzer reaches the services, not just the auth check.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from slotwise.api.app import create_app
from slotwise.api.limits import MAX_BODY_BYTES
from slotwise.config import Settings
from tests.conftest import OPERATOR_KEY, START
from tests.factories import Api
from tests.reliability.harness import fuzz_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # schemathesis passes per-request cookies
EXAMPLES = int(os.environ.get("SLOTWISE_FUZZ_EXAMPLES", "10"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance,
          checks.negative_data_rejection]


def _settings(url: str) -> Settings:
    return Settings(database_url=url, operator_key=OPERATOR_KEY, catalog_path=None, clock="simulated",
                    clock_start=START, secure_cookies=False)


# The document is read from an app that is never called; the calls go to the per-backend app below.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_settings("sqlite://")),
    config=SchemathesisConfig.from_dict({"generation": {"mode": "all"}}),
)


@dataclass
class Target:
    client: TestClient
    org_id: str
    owner_token: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with fuzz_client(request, tmp_path_factory, _settings) as client:
        org = Api(client, OPERATOR_KEY).create_org("pro")
        org.create_agents(2)
        yield Target(client, org.id, org.token)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_fuzzed_requests_get_documented_answers(case: Any, target: Target) -> None:
    if "org" in case.path_parameters:
        case.path_parameters["org"] = target.org_id
    token = OPERATOR_KEY if case.path.startswith("/v1/operator") else target.owner_token
    kwargs = case.as_transport_kwargs(headers={"Authorization": f"Bearer {token}"})
    kwargs.pop("base_url", None)
    response = target.client.request(**kwargs)
    case.validate_response(response, checks=CHECKS)


# --- the shapes a fuzzer rarely produces, asserted exactly --------------------------------------

@pytest.fixture
def owner(api: Api) -> Any:
    org = api.create_org("pro")
    return org


def _add(client: TestClient, org: Any, content: bytes, **headers: str) -> Any:
    return client.post(f"{org.path}/addons/agent_slots/add", content=content,
                       headers={**org.api.bearer(org.token), "content-type": "application/json", **headers})


class TestHostileBodies:
    def test_a_body_over_64_kib_is_refused_with_413_and_changes_nothing(self, api: Api, owner: Any) -> None:
        padded = b'{"quantity": 1}' + b" " * MAX_BODY_BYTES
        response = _add(api.client, owner, padded)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert owner.capacity("agents")["active_slots"] == 0
        assert len(owner.invoices()) == 1  # the subscription's first invoice only

    def test_a_lying_content_length_is_refused_before_reading(self, api: Api, owner: Any) -> None:
        response = _add(api.client, owner, b'{"quantity": 1}', **{"content-length": str(10 * MAX_BODY_BYTES)})
        assert response.status_code == 413

    def test_a_body_just_under_the_limit_is_read(self, api: Api, owner: Any) -> None:
        body = b'{"quantity": 1}' + b" " * (MAX_BODY_BYTES - 20)
        assert _add(api.client, owner, body).status_code == 200
        assert owner.capacity("agents")["active_slots"] == 1

    @pytest.mark.parametrize("depth", [100, 10_000, 30_000])
    def test_deeply_nested_json_is_a_4xx(self, api: Api, owner: Any, depth: int) -> None:
        nested = b'{"quantity": ' + b"[" * depth + b"]" * depth + b"}"
        response = _add(api.client, owner, nested)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert owner.capacity("agents")["active_slots"] == 0

    @pytest.mark.parametrize("body", [
        b'{"quantity": "2"}', b'{"quantity": 2.5}', b'{"quantity": true}', b'{"quantity": null}',
        b'{"quantity": 1e400}', b'{"quantity": 123456789012345678901234567890}', b'{"quantity": -1}',
        b"[1]", b'"quantity"', b"null", b"", b"\xff\xfe{}", b'{"quantity": 1, "extra": 1}',
    ])
    def test_wrong_types_are_422(self, api: Api, owner: Any, body: bytes) -> None:
        response = _add(api.client, owner, body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert owner.capacity("agents")["active_slots"] == 0

    @pytest.mark.parametrize("name", ["a\u0000b", "\ud800", "x" * 201, "   "])
    def test_strange_names_are_refused_not_crashed(self, api: Api, owner: Any, name: str) -> None:
        import json

        content = json.dumps({"name": name}).encode()
        response = api.client.post(f"{owner.path}/agents", content=content,
                                   headers={**api.bearer(owner.token), "content-type": "application/json"})
        assert response.status_code == 422, response.text

    def test_huge_path_and_header_values_are_4xx(self, api: Api, owner: Any) -> None:
        long_id = "a" * 5000
        assert owner.post(f"/agents/{long_id}/archive").status_code == 404
        response = owner.post("/agents", {"name": "x"}, key="k" * 256)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_the_limit_is_the_documented_one() -> None:
    assert MAX_BODY_BYTES == 64 * 1024
