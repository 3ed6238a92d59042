"""Fuzzing the REST API against its own OpenAPI schema, plus a set of hostile inputs.

No request may get a 500, and every response must match the schema."""

import json

import pytest
import schemathesis
from schemathesis import checks
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings
from hypothesis import HealthCheck, settings

from accounts.models import ApiToken
from tests.factory import make_user, make_val

schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", WSGIHandler())

# What must hold for every request, valid or not. (Whether a schema-valid request is
# accepted depends on data, like a name being taken, so that check is left out.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture
def fuzzer_token(db):
    # The WSGI handler closes the database connection after each request, which would
    # close the test's own transaction; the test client avoids that the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    cache.clear()
    fuzzer = make_user("fuzzer")
    make_val(fuzzer, name="target", code="export default () => 1;")
    _, raw = ApiToken.issue(fuzzer, "fuzz", "write")
    yield raw
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@override_settings(API_RATE_LIMIT_PER_TOKEN=100_000, API_RATE_LIMIT_PER_IP=100_000)
def test_no_endpoint_errors_and_every_response_matches_the_schema(case, fuzzer_token):
    if case.path.endswith("/run"):
        case.body = {"args": []}  # runs are covered elsewhere; fuzz their ids, not the code
    response = case.call(headers={"Authorization": f"Bearer {fuzzer_token}"})
    case.validate_response(response, checks=CHECKS)


@pytest.fixture
def api(fuzzer_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {fuzzer_token}")
    return client


HOSTILE_NAMES = ["'; DROP TABLE vals_val; --", "{{ 7*7 }}", "{% debug %}", "<script>", "${7*7}", "a" * 10_000, "\u0000", "名前"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_cleanly(api, name):
    response = api.post("/v1/vals", {"name": name}, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"type", "message"}


def test_a_huge_body_is_refused_cleanly(api):
    response = api.post("/v1/vals", {"name": "big", "code": "x" * (3 * 1024 * 1024)}, content_type="application/json")
    assert response.status_code in (400, 413)


def test_deeply_nested_json_is_refused_cleanly(api):
    deep = "[" * 100_000 + "]" * 100_000
    response = api.post("/v1/vals/1/run", deep, content_type="application/json")
    assert response.status_code == 400


def test_invalid_utf8_is_refused_cleanly(api):
    response = api.post("/v1/vals", b'{"name": "\xff\xfe"}', content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [{"name": 5}, {"name": None}, {"name": ["a"]}, {"name": "ok", "privacy": 1}, {"name": "ok", "code": {"a": 1}}, [], "text"],
)
def test_wrong_types_are_refused_cleanly(api, body):
    response = api.post("/v1/vals", json.dumps(body), content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/v1/alias/%27%3B--/x", "/v1/alias/{{7*7}}/x", "/v1/secrets/%00", "/v1/vals/99999999999999999999"])
def test_hostile_paths_are_clean_4xx(api, path):
    assert 400 <= api.get(path).status_code < 500


def test_unknown_api_paths_get_json_404s(api):
    response = api.get("/v1/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"error": {"type": "not_found", "message": "Not found."}}
    assert b"<html" in Client().get("/no/such/page").content
