"""Every URL that names an object by id or name: bob, signed in, gets a 404 for alice's
private things (the same as for things that don't exist) and changes nothing, on the
pages and through the API with his own read-write token.

tests/test_privacy_matrix.py covers vals by name across public, unlisted and private;
this covers every other kind of id, and fails when a route with a new kind of id is
added without being listed here.
"""

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from tests.security.test_csrf import parameters, walk
from vals.api import api
from vals.blob import Blob
from vals.evaluations.models import Evaluation
from vals.models import Val

# Routes whose parameters don't name anything private, and why.
NOT_PRIVATE = {
    "std_module": "the platform's public standard library",
    "profile": "profiles are public",
    "account_confirm_email": "an emailed secret key, not an id",
    "account_reset_password_from_key": "an emailed secret key, not an id",
}


@pytest.fixture
def world(db):
    alice, bob = make_user("alice"), make_user("bob")
    val = make_val(alice, name="diary", code="// alice's secret\n", privacy="private", type="cron", readme="private thoughts")
    val.save_version("// alice's secret, v1\n")
    token, _ = ApiToken.issue(alice, "laptop")
    Secret.put(alice, "DIARY_KEY", "s3cret")
    blob = Blob.objects.create(owner=alice, key="notes", size=1, is_text=True, path="unused")
    evaluation = Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success", logs=[{"seq": 0, "level": "log", "message": "alice's log", "ts": 1.0}])
    bob_client = Client()
    bob_client.force_login(bob)
    _, bob_token = ApiToken.issue(bob, "phone", scope=ApiToken.Scope.WRITE)
    samples = {
        "val_id": val.pk,
        "number": 0,
        "token_id": token.pk,
        "evaluation_id": evaluation.pk,
        "blob_id": blob.pk,
        "username": "alice",
    }
    # Routes where "name" is a secret's, not a val's.
    names = {"delete_secret": "DIARY_KEY"}
    return {
        "alice": alice, "bob": bob, "val": val, "token": token, "blob": blob, "evaluation": evaluation,
        "bob_client": bob_client, "bob_token": bob_token, "samples": samples, "names": names,
    }


def alice_is_untouched(world):
    val = Val.objects.get(pk=world["val"].pk)
    assert (val.name, val.version, val.code, val.privacy, val.readme) == ("diary", 1, "// alice's secret, v1\n", "private", "private thoughts")
    assert val.like_count == 0 and not Val.objects.filter(forked_from=val).exists()
    assert ApiToken.objects.filter(pk=world["token"].pk).exists()
    assert Secret.objects.filter(owner=world["alice"], name="DIARY_KEY").exists()
    assert Blob.objects.filter(pk=world["blob"].pk).exists()
    assert Evaluation.objects.filter(val=val).count() == 1
    assert not Val.objects.filter(owner=world["bob"]).exists()


def routes_with_ids():
    for name, pattern in walk(get_resolver().url_patterns):
        if name.startswith(("admin:", "api:")) or name == "inbound_email":
            continue
        if parameters(pattern) and name not in NOT_PRIVATE:
            yield name, pattern


def test_bob_gets_404_for_everything_of_alices_and_changes_nothing(world):
    samples, client = world["samples"], world["bob_client"]
    checked = set()
    for name, pattern in routes_with_ids():
        kwargs = {key: world["names"].get(name, "diary") if key == "name" else samples[key] for key in parameters(pattern)}
        url = reverse(name, kwargs=kwargs)
        for method in ("get", "post"):
            response = getattr(client, method)(url, {"name": "stolen", "code": "x", "schedule": "every 1 minute", "args": "[]"})
            # 405: a method the route doesn't take, answered before any lookup.
            assert response.status_code in (404, 405), (method, url, response.status_code)
            if response.status_code == 404:
                checked.add(name)
                assert b"alice's" not in response.content and b"private thoughts" not in response.content
    assert {"val", "val_save", "val_run", "val_delete", "evaluation", "revoke_token", "delete_secret", "delete_blob"} <= checked
    alice_is_untouched(world)


def test_bobs_lists_never_show_alices_things(world):
    client = world["bob_client"]
    for url in ("/settings/evaluations", f"/settings/evaluations?val={world['val'].pk}", "/settings/tokens", "/settings/secrets", "/settings/blobs", "/u/alice", "/?q=thoughts"):
        response = client.get(url)
        assert response.status_code == 200
        for secret in (b"diary", b"private thoughts", b"laptop", b"DIARY_KEY", b"notes", b"alice&#x27;s"):
            assert secret not in response.content, (url, secret)


# A body every write operation accepts, so the request gets as far as looking the object up.
BODY = {"name": "stolen", "code": "export default () => 1;", "type": "script", "privacy": "public", "readme": "", "args": []}


def test_bob_cannot_reach_alices_things_through_the_api(world):
    """Every API operation with an id or name in its path, with bob's read-write token."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world['bob_token']}"}
    values = {
        "val_id": world["val"].pk,
        "evaluation_id": world["evaluation"].pk,
        "number": 0,
        "username": "alice",
        "name": "diary",
        "spelled": "alice.diary",
        "path": "x",
    }
    client = Client()
    checked = 0
    for path, operations in api.get_openapi_schema()["paths"].items():
        if "{" not in path or path.startswith(("/v1/eval", "/v1/secrets")):
            continue  # /eval takes code, not a name; secrets are per user (below)
        url = path
        for key, value in values.items():
            url = url.replace("{" + key + "}", str(value))
        assert "{" not in url, f"a new kind of id in the API: {path}"
        for method in operations:
            if method == "get":
                response = client.get(url, **headers)
            else:
                body = [] if path.startswith("/v1/run/") else BODY  # run takes the arguments as its body
                response = getattr(client, method)(url, body, content_type="application/json", **headers)
            assert response.status_code == 404, (method, url, response.status_code)
            checked += 1
    assert checked >= 10
    # Secrets are named within the caller's own store: bob's "DIARY_KEY" is not alice's.
    response = client.delete("/v1/secrets/DIARY_KEY", **headers)
    assert response.status_code == 404
    alice_is_untouched(world)
