"""The v1 routes that run code: /v1/eval, /v1/run/<user>.<val> and /v1/express/..., on a
real server with its real pool. Success, each error status, and private vals refused."""

import json
import time
from urllib.parse import quote

import httpx
import pytest

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.factory import make_user, make_val
from tests.live import LiveServer, quiet_server_before_flush  # noqa: F401 (an autouse fixture)
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    live = LiveServer(
        {
            "EVALUATION_TIMEOUT_SECONDS": "2",
            "ANONYMOUS_EVAL_RATE_LIMIT_PER_IP": "1000",
            "VAL_MAX_CODE_BYTES": "20000",
            # No scheduler ticking in the server while the test database is flushed.
            "EMBEDDED_SCHEDULER": "false",
        }
    )
    yield live
    live.stop()



def token_for(user):
    _, raw = ApiToken.issue(user, "t", "write")
    return {"Authorization": f"Bearer {raw}"}


def error_of(response):
    body = response.json()
    assert set(body["error"]) >= {"type", "message"}, body
    return body["error"]


def test_an_anonymous_get_evaluates_an_expression(server):
    response = httpx.get(f"{server.url}/v1/eval/{quote('1 + 2 * 3', safe='')}", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == 7


def test_a_post_calls_a_modules_default_export_with_args_and_returns_its_logs(server):
    code = "export default (a: number, b: number) => { console.log('adding', a, b); return a + b; };"
    response = httpx.post(f"{server.url}/v1/eval", json={"code": code, "args": [2, 40]}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["result"] == 42, body
    assert [line["message"] for line in body["logs"]] == ["adding 2 40"]


def test_with_a_token_eval_runs_as_its_user_with_their_secrets_redacted_from_output(server):
    alice = make_user("alice")
    Secret.put(alice, "GREETING", "hello-from-alice")
    code = "export default () => Deno.env.get('GREETING')?.length ?? 'no secret';"
    assert httpx.post(f"{server.url}/v1/eval", json={"code": code}, headers=token_for(alice), timeout=30).json()["result"] == 16
    assert httpx.post(f"{server.url}/v1/eval", json={"code": code}, timeout=30).json()["result"] == "no secret"
    leak = httpx.post(f"{server.url}/v1/eval", json={"code": "Deno.env.get('GREETING')"}, headers=token_for(alice), timeout=30)
    assert "hello-from-alice" not in leak.text


def test_eval_errors_have_one_shape_and_the_right_status(server):
    thrown = httpx.post(f"{server.url}/v1/eval", json={"code": "export default () => { throw new TypeError('nope'); }"}, timeout=30)
    assert thrown.status_code == 400 and error_of(thrown)["type"] == "val_error" and "nope" in error_of(thrown)["message"]
    assert "stack" in error_of(thrown)

    slow = httpx.post(f"{server.url}/v1/eval", json={"code": "export default () => new Promise(() => { while (true) {} })"}, timeout=30)
    assert slow.status_code == 504 and error_of(slow)["type"] == "timeout"

    too_big = httpx.post(f"{server.url}/v1/eval", json={"code": "1 + " * 6000 + "1"}, timeout=30)
    assert too_big.status_code == 413 and error_of(too_big)["type"] == "too_large"

    bad_args = httpx.post(f"{server.url}/v1/eval", json={"code": "1", "args": "not a list"}, timeout=30)
    assert bad_args.status_code == 400 and error_of(bad_args)["type"] == "bad_request"

    bad_token = httpx.post(f"{server.url}/v1/eval", json={"code": "1"}, headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert bad_token.status_code == 401 and error_of(bad_token)["type"] == "unauthorized"


def test_anonymous_evals_have_a_stricter_rate_limit(server):
    limited = LiveServer({"ANONYMOUS_EVAL_RATE_LIMIT_PER_IP": "2"})
    try:
        # The limit counts in one-minute windows: don't straddle a window's end.
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        statuses = [httpx.get(f"{limited.url}/v1/eval/1", timeout=30) for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["Retry-After"]) > 0 and error_of(statuses[2])["type"] == "rate_limited"
    finally:
        limited.stop()


def test_run_calls_a_val_as_its_author_and_answers_with_its_json(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(bob, "TOKEN", "bobs-token")
    val = make_val(bob, name="add", code="export default (a: number, b: number) => ({ sum: a + b, hasToken: !!Deno.env.get('TOKEN') });")

    by_get = httpx.get(f"{server.url}/v1/run/bob.add", params={"args": "[1, 2]"}, timeout=30)
    assert by_get.status_code == 200 and by_get.json() == {"sum": 3, "hasToken": True}
    by_post = httpx.post(f"{server.url}/v1/run/bob.add", json=[10, 20], headers=token_for(alice), timeout=30)
    assert by_post.status_code == 200 and by_post.json() == {"sum": 30, "hasToken": True}
    assert set(Evaluation.objects.filter(val=val).values_list("principal__username", "trigger")) == {("bob", "api")}


def test_run_errors_and_private_vals(server):
    alice, bob = make_user("alice"), make_user("bob")
    make_val(bob, name="secret_sauce", code="export default () => 'sauce';", privacy=Val.Privacy.PRIVATE)
    make_val(bob, name="broken", code="export default () => { throw new Error('broken on purpose'); };")

    assert httpx.get(f"{server.url}/v1/run/bob.secret_sauce", timeout=30).status_code == 404
    as_alice = httpx.get(f"{server.url}/v1/run/bob.secret_sauce", headers=token_for(alice), timeout=30)
    missing = httpx.get(f"{server.url}/v1/run/bob.no_such_val", headers=token_for(alice), timeout=30)
    assert as_alice.status_code == missing.status_code == 404 and as_alice.json() == missing.json()
    as_bob = httpx.get(f"{server.url}/v1/run/bob.secret_sauce", headers=token_for(bob), timeout=30)
    assert as_bob.status_code == 200 and as_bob.json() == "sauce"

    bad = httpx.get(f"{server.url}/v1/run/bob.broken", params={"args": "{not json"}, timeout=30)
    assert bad.status_code == 400 and error_of(bad)["type"] == "bad_request"
    failed = httpx.get(f"{server.url}/v1/run/bob.broken", timeout=30)
    assert failed.status_code == 502 and "broken on purpose" in error_of(failed)["message"]
    # The stack names the author's modules, private ones too: for the author alone.
    assert error_of(failed).get("stack") is None
    assert error_of(httpx.get(f"{server.url}/v1/run/bob.broken", headers=token_for(alice), timeout=30)).get("stack") is None
    assert "broken on purpose" in error_of(httpx.get(f"{server.url}/v1/run/bob.broken", headers=token_for(bob), timeout=30))["stack"]


def test_express_redirects_to_the_vals_own_origin(server):
    bob = make_user("bob")
    make_val(bob, name="site", type=Val.Type.HTTP, code="export default () => new Response('hi');")
    make_val(bob, name="script", code="export default () => 1;")

    response = httpx.post(f"{server.url}/v1/express/bob.site/some/path", params={"q": "1"}, content=b"body", timeout=30)
    assert response.status_code == 307
    location = response.headers["Location"]
    assert location.startswith("http://bob-site.web.") and location.endswith("/some/path?q=1")
    assert not location.startswith(server.url)
    not_http = httpx.get(f"{server.url}/v1/express/bob.script/x", timeout=30)
    assert not_http.status_code == 400 and error_of(not_http)["type"] == "not_http_val"
    assert httpx.get(f"{server.url}/v1/express/bob.nothing/x", timeout=30).status_code == 404


def test_eval_imports_vals_in_restricted_library_mode(server):
    alice, bob = make_user("alice"), make_user("bob")
    Secret.put(alice, "ALICE_SECRET", "alice-s3cret")
    make_val(bob, name="peek", code="export const peek = () => Deno.env.get('ALICE_SECRET') ?? 'nothing';")
    code = 'import { peek } from "/v/bob/peek.ts";\nexport default async () => [await peek(), Deno.env.get("ALICE_SECRET")?.length];'
    body = httpx.post(f"{server.url}/v1/eval", json={"code": code}, headers=token_for(alice), timeout=30).json()
    assert body["result"] == ["nothing", len("alice-s3cret")], json.dumps(body)
