"""The REST API under /v1/: tokens, scopes, the privacy matrix, errors, pagination."""

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.factory import make_val
from vals.evaluations.models import Evaluation
from vals.models import Val


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()


class ApiClient:
    def __init__(self, raw=None):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}

    def __getattr__(self, method):
        def call(path, data=None, **extra):
            kwargs = {"content_type": "application/json"} if data is not None else {}
            args = (path, data) if data is not None else (path,)
            return getattr(self.client, method)(*args, **kwargs, **self.headers, **extra)

        return call


def api_as(user, scope="write", **extra):
    _, raw = ApiToken.issue(user, "test", scope, **extra)
    return ApiClient(raw)


def test_a_token_is_shown_once_and_stored_hashed(alice_client, alice):
    response = alice_client.post("/settings/tokens", {"name": "laptop", "scope": "write"})
    raw = response.context["new_token"]
    assert raw.startswith("vt_") and raw.encode() in response.content
    token = ApiToken.objects.get(user=alice)
    assert raw not in (token.hashed, token.prefix) and token.prefix == raw[:10]
    again = alice_client.get("/settings/tokens")
    assert raw.encode() not in again.content and b"laptop" in again.content


def test_a_revoked_token_stops_working(alice_client, alice):
    token, raw = ApiToken.issue(alice, "old", "write")
    assert ApiClient(raw).get("/v1/me").status_code == 200
    alice_client.post(f"/settings/tokens/{token.pk}/revoke")
    assert ApiClient(raw).get("/v1/me").status_code == 401


def test_an_expired_token_stops_working(alice):
    client = api_as(alice, expires_at=timezone.now() - timezone.timedelta(minutes=1))
    response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"


def test_using_a_token_records_when(alice):
    token, raw = ApiToken.issue(alice, "t", "read")
    ApiClient(raw).get("/v1/me")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_me_says_who_the_token_belongs_to(alice):
    assert api_as(alice).get("/v1/me").json()["username"] == "alice"


def test_no_token_no_access(db):
    for path in ["/v1/me", "/v1/vals", "/v1/evaluations", "/v1/secrets"]:
        response = ApiClient().get(path)
        assert response.status_code == 401 and response.json()["error"]["type"] == "unauthorized"


def test_the_whole_life_of_a_val_through_the_api(alice):
    api = api_as(alice)
    created = api.post("/v1/vals", {"name": "hello", "code": "export default () => 1;", "type": "script"})
    assert created.status_code == 201
    val_id = created.json()["id"]
    saved = api.post(f"/v1/vals/{val_id}/versions", {"code": "export default () => 2;"})
    assert saved.status_code == 201 and saved.json() == {"number": 1, "created": True}
    assert api.post(f"/v1/vals/{val_id}/versions", {"code": "export default () => 2;"}).json()["created"] is False
    renamed = api.patch(f"/v1/vals/{val_id}", {"name": "greet", "privacy": "unlisted", "type": "http"})
    assert renamed.json()["name"] == "greet" and renamed.json()["privacy"] == "unlisted"
    assert api.get("/v1/alias/alice/greet").json()["code"] == "export default () => 2;"
    versions = api.get(f"/v1/vals/{val_id}/versions").json()
    assert [v["number"] for v in versions["items"]] == [1, 0]
    assert api.get(f"/v1/vals/{val_id}/versions/0").json()["code"] == "export default () => 1;"
    assert api.get("/v1/vals").json()["count"] == 1
    assert api.delete(f"/v1/vals/{val_id}").status_code == 204
    assert api.get(f"/v1/vals/{val_id}").status_code == 404


def test_forks_and_likes_through_the_api(alice, bob):
    val = make_val(alice, name="foo")
    api = api_as(bob)
    fork = api.post(f"/v1/vals/{val.pk}/fork")
    assert fork.status_code == 201 and fork.json()["forked_from"] == val.pk and fork.json()["owner"] == "bob"
    assert api.post(f"/v1/vals/{val.pk}/like").json() == {"liked": True, "like_count": 1}
    assert api.delete(f"/v1/vals/{val.pk}/like").json() == {"liked": False, "like_count": 0}


@pytest.mark.parametrize(
    "privacy, by_name, by_id", [("public", True, True), ("unlisted", True, False), ("private", False, False)]
)
def test_the_api_follows_the_privacy_matrix(alice, bob, privacy, by_name, by_id):
    """An unlisted val is open to whoever knows its name (/v1/alias); ids are counted, so
    by id it is its owner's alone."""
    val = make_val(alice, name="foo", privacy=privacy)
    owner, stranger = api_as(alice), api_as(bob)
    paths = [("/v1/alias/alice/foo", by_name)] + [
        (path, by_id) for path in (f"/v1/vals/{val.pk}", f"/v1/vals/{val.pk}/versions", f"/v1/vals/{val.pk}/versions/0")
    ]
    for path, stranger_sees in paths:
        assert owner.get(path).status_code == 200
        response = stranger.get(path)
        assert response.status_code == (200 if stranger_sees else 404)
        if not stranger_sees:
            missing = path.replace(f"/vals/{val.pk}", "/vals/999999").replace("/foo", "/nope")
            assert response.json() == stranger.get(missing).json()
    for method, path in [("post", f"/v1/vals/{val.pk}/fork"), ("post", f"/v1/vals/{val.pk}/like")]:
        assert getattr(stranger, method)(path).status_code in ((201, 200) if by_id else (404,))


def test_only_the_owner_changes_a_val(alice, bob):
    val = make_val(alice, name="foo")
    stranger = api_as(bob)
    assert stranger.patch(f"/v1/vals/{val.pk}", {"name": "mine"}).status_code == 403
    assert stranger.post(f"/v1/vals/{val.pk}/versions", {"code": "x"}).status_code == 403
    assert stranger.delete(f"/v1/vals/{val.pk}").status_code == 403
    assert Val.objects.get(pk=val.pk).name == "foo"


def test_a_read_only_token_cannot_change_anything(alice):
    val = make_val(alice, name="foo")
    reader = api_as(alice, scope="read")
    assert reader.get(f"/v1/vals/{val.pk}").status_code == 200
    for method, path, data in [
        ("post", "/v1/vals", {"name": "x"}),
        ("patch", f"/v1/vals/{val.pk}", {"name": "y"}),
        ("post", f"/v1/vals/{val.pk}/versions", {"code": "z"}),
        ("delete", f"/v1/vals/{val.pk}", None),
        ("put", "/v1/secrets/TOKEN", {"value": "v"}),
        ("post", f"/v1/vals/{val.pk}/run", {"args": []}),
    ]:
        response = getattr(reader, method)(path, data)
        assert response.status_code == 403, path
        assert response.json()["error"]["type"] == "forbidden"


def test_bad_input_gets_400_in_the_one_error_shape(alice):
    api = api_as(alice)
    make_val(alice, name="taken")
    for data in [{"name": "bad name"}, {"name": "taken"}, {"name": "ok", "type": "nonsense"}, {"code": "no name"}]:
        response = api.post("/v1/vals", data)
        assert response.status_code == 400, data
        assert set(response.json()["error"]) >= {"type", "message"}


def test_secrets_through_the_api_never_return_values(alice):
    api = api_as(alice)
    assert api.put("/v1/secrets/API_KEY", {"value": "sk-hidden-123"}).status_code == 204
    listing = api.get("/v1/secrets")
    assert listing.json()["items"][0]["name"] == "API_KEY"
    assert b"sk-hidden-123" not in listing.content
    assert Secret.objects.get(owner=alice).value == "sk-hidden-123"
    assert api.put("/v1/secrets/lower", {"value": "v"}).status_code == 400
    assert api.delete("/v1/secrets/API_KEY").status_code == 204
    assert api.delete("/v1/secrets/API_KEY").status_code == 404


def test_evaluations_are_listed_with_filters_and_only_your_own(alice, bob):
    val = make_val(alice, name="foo")
    mine = Evaluation.objects.create(val=val, val_version=0, principal=alice, status="error", logs=[{"seq": 0, "level": "log", "message": "hi", "ts": 1.0}])
    Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", trigger="cron")
    theirs = Evaluation.objects.create(val=val, val_version=0, principal=bob, status="success")
    api = api_as(alice)
    assert api.get("/v1/evaluations").json()["count"] == 2
    assert [e["id"] for e in api.get("/v1/evaluations", {"status": "error"}).json()["items"]] == [mine.pk]
    assert api.get(f"/v1/vals/{val.pk}/evaluations", {"trigger": "cron"}).json()["count"] == 1
    assert api.get(f"/v1/evaluations/{mine.pk}").json()["logs"][0]["message"] == "hi"
    assert api.get(f"/v1/evaluations/{theirs.pk}").status_code == 404


def test_lists_are_paginated_with_a_maximum_page_size(alice):
    for n in range(5):
        make_val(alice, name=f"v{n}")
    api = api_as(alice)
    first = api.get("/v1/vals", {"limit": 2}).json()
    second = api.get("/v1/vals", {"limit": 2, "offset": 2}).json()
    assert first["count"] == 5 and len(first["items"]) == 2
    assert {v["id"] for v in first["items"]}.isdisjoint({v["id"] for v in second["items"]})
    assert api.get("/v1/vals", {"limit": 1000}).status_code == 400


@override_settings(API_RATE_LIMIT_PER_TOKEN=3)
def test_a_token_over_its_rate_limit_gets_429_with_retry_after(alice):
    api = api_as(alice)
    statuses = [api.get("/v1/me").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get("/v1/me")
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["type"] == "rate_limited"


@override_settings(API_RATE_LIMIT_PER_IP=2)
def test_a_client_ip_over_its_rate_limit_gets_429_even_without_a_token(db):
    statuses = [ApiClient().get("/v1/me").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


@pytest.mark.django_db(transaction=True)
def test_running_a_val_through_the_api_waits_for_the_result(alice):
    val = make_val(alice, name="sum", code="export default (a, b) => { console.log('adding'); return a + b; };")
    response = api_as(alice).post(f"/v1/vals/{val.pk}/run", {"args": [2, 3]})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["result"]["value"] == 5
    assert body["logs"][0]["message"] == "adding" and body["trigger"] == "api"


def test_the_schema_and_docs_are_served(db):
    schema = Client().get("/v1/openapi.json")
    assert schema.status_code == 200 and "/v1/vals/{val_id}" in schema.json()["paths"]
    assert Client().get("/v1/docs").status_code == 200


def test_the_interactive_docs_need_nothing_from_the_internet(db):
    content = Client().get("/v1/docs").content.decode()
    assert "swagger-ui-bundle.js" in content
    assert "https://" not in content
