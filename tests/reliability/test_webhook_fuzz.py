"""The webhook endpoints' operations fuzzed by schemathesis with SLOTWISE_SECRET_KEY set, so that
registration, rotation, the test-send and replays are reached (tests/reliability/test_hostile_input.py
runs without a key, where they stop at 409 ``secret_key_missing``). Half the calls name a real
endpoint. Never a 5xx; only documented statuses and schemas. SLOTWISE_FUZZ_EXAMPLES per operation."""

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
from slotwise.config import Settings
from tests.conftest import OPERATOR_KEY, START
from tests.events.support import SECRET_KEY
from tests.reliability.harness import fuzz_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
EXAMPLES = int(os.environ.get("SLOTWISE_FUZZ_EXAMPLES", "5"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection]


def _settings(url: str) -> Settings:
    return Settings(database_url=url, operator_key=OPERATOR_KEY, catalog_path=None, clock="simulated",
                    clock_start=START, secure_cookies=False, secret_key=SECRET_KEY)


schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_settings("sqlite://")),
    config=SchemathesisConfig.from_dict({"generation": {"mode": "all"}}),
).include(path_regex="^/v1/operator/webhook-endpoints")


@dataclass
class Target:
    client: TestClient
    endpoint_id: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with fuzz_client(request, tmp_path_factory, _settings) as client:
        made = client.post("/v1/operator/webhook-endpoints", json={"url": "http://127.0.0.1:9/refused"},
                           headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        assert made.status_code == 201, made.text
        yield Target(client, made.json()["id"])


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_fuzzed_endpoint_calls_get_documented_answers(case: Any, target: Target) -> None:
    if "endpoint_id" in case.path_parameters and len(str(case.path_parameters)) % 2:
        case.path_parameters["endpoint_id"] = target.endpoint_id
    kwargs = case.as_transport_kwargs(headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    kwargs.pop("base_url", None)
    response = target.client.request(**kwargs)
    case.validate_response(response, checks=CHECKS)
