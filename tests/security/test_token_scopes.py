"""Every API operation checks its token's scope (finding 2 of the attack review).

A read-only token ran code as its user, with every secret, blob write, email and api():
POST /v1/eval, and /v1/run of one's own private vals. Running code is a write. Here every
operation of the API is tried with a read-only token, a read-write one, none, and an
expired one; OPERATIONS says what each needs, and a new operation that isn't listed
fails the first test.
"""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from vals.api import api
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)

READ, WRITE, ANYONE = "read", "write", "anyone"

# (method, path as the router spells it) -> (the access it needs, what a request sends:
# the path filled in, and a JSON body). ANYONE: no token works too (anonymously), but a
# token must still have the access named second.
OPERATIONS = {
    ("GET", "/me"): (READ, "/v1/me", None),
    ("GET", "/vals"): (READ, "/v1/vals", None),
    ("POST", "/vals"): (WRITE, "/v1/vals", {"name": "made", "code": "export default 1;"}),
    ("GET", "/vals/{val_id}"): (READ, "/v1/vals/{val}", None),
    ("PATCH", "/vals/{val_id}"): (WRITE, "/v1/vals/{val}", {"readme": "changed"}),
    ("DELETE", "/vals/{val_id}"): (WRITE, "/v1/vals/{doomed}", None),
    ("GET", "/alias/{username}/{name}"): (READ, "/v1/alias/alice/diary", None),
    ("GET", "/vals/{val_id}/versions"): (READ, "/v1/vals/{val}/versions", None),
    ("POST", "/vals/{val_id}/versions"): (WRITE, "/v1/vals/{val}/versions", {"code": "export default 2;"}),
    ("GET", "/vals/{val_id}/versions/{number}"): (READ, "/v1/vals/{val}/versions/0", None),
    ("POST", "/vals/{val_id}/fork"): (WRITE, "/v1/vals/{bobs}/fork", None),
    ("POST", "/vals/{val_id}/like"): (WRITE, "/v1/vals/{bobs}/like", None),
    ("DELETE", "/vals/{val_id}/like"): (WRITE, "/v1/vals/{bobs}/like", None),
    ("GET", "/evaluations"): (READ, "/v1/evaluations", None),
    ("GET", "/vals/{val_id}/evaluations"): (READ, "/v1/vals/{val}/evaluations", None),
    ("GET", "/evaluations/{evaluation_id}"): (READ, "/v1/evaluations/{evaluation}", None),
    ("POST", "/vals/{val_id}/run"): (WRITE, "/v1/vals/{val}/run", {"args": []}),
    ("GET", "/secrets"): (READ, "/v1/secrets", None),
    ("PUT", "/secrets/{name}"): (WRITE, "/v1/secrets/NEW_SECRET", {"value": "v"}),
    ("DELETE", "/secrets/{name}"): (WRITE, "/v1/secrets/DIARY_KEY", None),
    ("GET", "/eval/{expression}"): ((ANYONE, WRITE), "/v1/eval/1%2B1", None),
    ("POST", "/eval"): ((ANYONE, WRITE), "/v1/eval", {"code": "1 + 1"}),
    ("GET", "/run/{spelled}"): ((ANYONE, WRITE), "/v1/run/alice.diary", None),
    ("POST", "/run/{spelled}"): ((ANYONE, WRITE), "/v1/run/alice.diary", []),
    **{
        (method, "/express/{spelled}/{path:path}"): ((ANYONE, READ), "/v1/express/alice.site/x", None)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
}


def routed_operations():
    for prefix, router in api._routers:
        for path, view in router.path_operations.items():
            for operation in view.operations:
                for method in operation.methods:
                    yield method, prefix + path


def test_every_operation_of_the_api_is_listed_here():
    assert set(routed_operations()) == set(OPERATIONS)


@pytest.fixture
def world():
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(alice, "DIARY_KEY", "alice-diary-key-1234")
    val = make_val(alice, name="diary", code='export default () => Deno.env.get("DIARY_KEY")?.length;', privacy=Val.Privacy.PRIVATE)
    make_val(alice, name="site", type="http", code="export default () => new Response('hi');")
    doomed = make_val(alice, name="doomed")
    bobs = make_val(bob, name="shared")
    evaluation = Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success")
    ids = {"val": val.pk, "doomed": doomed.pk, "bobs": bobs.pk, "evaluation": evaluation.pk}
    tokens = {
        "read": ApiToken.issue(alice, "r", ApiToken.Scope.READ)[1],
        "write": ApiToken.issue(alice, "w", ApiToken.Scope.WRITE)[1],
        "expired": ApiToken.issue(alice, "x", ApiToken.Scope.WRITE, expires_at=timezone.now() - timedelta(minutes=1))[1],
    }
    return ids, tokens


def send(method, path, body, token):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    client = Client()
    if body is None:
        return client.generic(method, path, **headers)
    return client.generic(method, path, data=json.dumps(body), content_type="application/json", **headers)


CASES = [(operation, scope) for operation in OPERATIONS for scope in ("read", "write", "none", "expired")]


@pytest.mark.parametrize("operation,scope", CASES, ids=[f"{m} {p} with {s}" for (m, p), s in CASES])
def test_each_operation_needs_its_scope(world, operation, scope):
    ids, tokens = world
    needs, path, body = OPERATIONS[operation]
    anyone, access = needs if isinstance(needs, tuple) else (None, needs)
    response = send(operation[0], path.format(**ids), body, tokens.get(scope))
    status = response.status_code

    if scope == "expired":
        assert status == 401, response.content
    elif scope == "none":
        assert (status not in (401, 403)) if anyone else status == 401, response.content
    elif scope == "read" and access == WRITE:
        assert status == 403, response.content
        assert response.json()["error"]["type"] == "forbidden"
    else:
        assert status not in (401, 403), response.content


def test_a_read_only_token_runs_no_code_and_reaches_no_secret(world):
    ids, tokens = world
    for method, path, body in [
        ("POST", "/v1/eval", {"code": 'Deno.env.get("DIARY_KEY")'}),
        ("GET", "/v1/eval/Deno.env.get(%22DIARY_KEY%22)", None),
        ("GET", "/v1/run/alice.diary", None),
        ("POST", "/v1/run/alice.diary", []),
        ("POST", f"/v1/vals/{ids['val']}/run", {"args": []}),
    ]:
        response = send(method, path, body, tokens["read"])
        assert response.status_code == 403, (path, response.content)
        assert b"alice-diary-key" not in response.content
    assert Evaluation.objects.count() == 1  # the fixture's own, nothing ran
