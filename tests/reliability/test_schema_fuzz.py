"""Issue 5 item 1: schemathesis generates requests from the service's own OpenAPI schema and sends
them to a real ``apudae serve`` on loopback — with and without the admin token. Zero 5xx, every
answer conforms to the schema's types and content types, nothing hangs (each call has a timeout).

Evaluation jobs it starts fail at once: the server's data directory is empty."""
from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from reliability_fixtures import ADMIN_TOKEN
from reliability_server import metric_samples, serve

EXAMPLES = 25 * (10 if os.environ.get("APUDAE_SOAK") == "1" else 1)
CALL_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def served(tiny_models_dir, tmp_path_factory):
    with serve(tiny_models_dir, tmp_path_factory.mktemp("schema-fuzz"), admin_token=ADMIN_TOKEN,
               max_images=8, max_pixels=256 * 256, max_body_bytes=2 * 2**20, eval_max_samples=2) as served:
        yield served
        print("schema fuzz answers by status:", answers_by_status(httpx.get(f"{served.url}/metrics").text))


def answers_by_status(metrics: str) -> dict[str, int]:
    """The server's own count of the requests it answered, by status (schema download included)."""
    counts: Counter = Counter()
    for labels, value in metric_samples(metrics, "apudae_http_requests_total"):
        counts[labels["status"]] += int(value)
    return dict(sorted(counts.items()))


@pytest.fixture(scope="module")
def api_schema(served):
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def call(case, served, headers: dict | None = None) -> None:
    """Send ``case``; fail on a 5xx, a body or content type the schema does not allow, or a dead server."""
    case.call_and_validate(headers=headers, timeout=CALL_TIMEOUT, checks=[
        not_a_server_error, content_type_conformance, response_schema_conformance])
    assert served.process.poll() is None


@schema.parametrize()
@FUZZ
def test_anonymous_requests_get_no_server_error(case, served):
    call(case, served)


@schema.parametrize()
@FUZZ
def test_admin_requests_get_no_server_error(case, served):
    call(case, served, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
