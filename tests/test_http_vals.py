"""HTTP vals on their own origins: routing, privacy, and isolation from the app's cookies."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from tests.factory import make_val
from vals.http_gateway import HttpValRouter, is_val_host, without_app_cookies

pytestmark = pytest.mark.django_db(transaction=True)


async def request(host, path="/", method="GET", body=b"", headers=()):
    """One request through the ASGI router, the way daphne would make it."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    async def django_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"the app"})

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "scheme": "http",
        "headers": [(b"host", host.encode()), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    await HttpValRouter(django_app)(scope, receive, send)
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_val_hosts_are_told_apart_from_the_app():
    assert is_val_host("alice-foo.web.localhost:8000")
    assert is_val_host("ALICE-FOO.WEB.LOCALHOST")
    assert not is_val_host("localhost:8000")
    assert not is_val_host("web.localhost.evil.com")


async def test_the_app_itself_is_not_routed_to_vals():
    assert await request("localhost:8000") == (299, b"the app")


async def test_an_unknown_val_is_404(alice):
    status, body = await request("alice-nothing.web.localhost:8000")
    assert status == 404


async def test_a_private_val_is_indistinguishable_from_a_missing_one(alice):
    await sync_to_async(make_val)(alice, name="secretApp", type="http", privacy="private")
    await sync_to_async(make_val)(alice, name="secretScript", type="script", privacy="private")
    missing = await request("alice-nothing.web.localhost:8000")
    for label in ("alice-secretapp", "alice-secretscript"):
        status, body = await request(f"{label}.web.localhost:8000")
        assert status == 404
        assert body.replace(label.encode(), b"") == missing[1].replace(b"alice-nothing", b"")


async def test_a_val_that_is_not_an_http_val_gets_a_clear_4xx(alice):
    await sync_to_async(make_val)(alice, name="job", type="script")
    status, body = await request("alice-job.web.localhost:8000")
    assert status == 400 and b"is a script val, not an HTTP val" in body


def test_the_apps_cookies_are_host_only_so_val_origins_never_get_them():
    assert settings.SESSION_COOKIE_DOMAIN is None and settings.CSRF_COOKIE_DOMAIN is None
    assert settings.SESSION_COOKIE_HTTPONLY


def test_the_gateway_strips_the_apps_cookies_anyway():
    headers = [(b"cookie", b"sessionid=abc; theme=dark; csrftoken=xyz"), (b"accept", b"*/*")]
    assert without_app_cookies(headers) == [(b"cookie", b"theme=dark"), (b"accept", b"*/*")]
    assert without_app_cookies([(b"cookie", b"sessionid=abc")]) == []


ECHO_VAL = """\
export default async function (req: Request): Promise<Response> {
  const url = new URL(req.url);
  const body = new Uint8Array(await req.arrayBuffer());
  console.log(`${req.method} ${url.pathname}${url.search}`);
  const headers = new Headers({ "content-type": "application/octet-stream", "x-seen-cookie": req.headers.get("cookie") ?? "" });
  headers.append("set-cookie", "a=1; Path=/");
  headers.append("set-cookie", "b=2; Path=/");
  return new Response(body.reverse(), { status: 201, headers });
}
"""


async def full_request(host, path="/", method="GET", body=b"", headers=()):
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": method, "path": path.split("?")[0], "raw_path": path.encode(),
        "query_string": path.partition("?")[2].encode(), "scheme": "http", "http_version": "1.1",
        "headers": [(b"host", host.encode()), *headers], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    await HttpValRouter(None)(scope, receive, send)
    start = sent[0]
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_an_http_val_round_trips_method_path_query_headers_and_binary_bodies(alice):
    from vals.evaluations.batch import writer
    from vals.evaluations.models import Evaluation

    await sync_to_async(make_val)(alice, name="echo", type="http", code=ECHO_VAL)
    payload = bytes(range(256))
    status, headers, body = await full_request(
        "alice-echo.web.localhost:8000", "/some/path?x=1&y=2", "POST", payload,
        headers=[(b"cookie", b"sessionid=stolen; theme=dark")],
    )
    assert status == 201
    assert body == payload[::-1]
    assert [v for k, v in headers if k == b"set-cookie"] == [b"a=1; Path=/", b"b=2; Path=/"]
    assert dict(headers)[b"x-seen-cookie"] == b"theme=dark"
    await writer.drain()
    evaluation = await Evaluation.objects.aget(trigger="http")
    assert (evaluation.http_method, evaluation.http_path, evaluation.http_status) == ("POST", "/some/path?x=1&y=2", 201)
    assert evaluation.status == "success" and evaluation.logs[0]["message"] == "POST /some/path?x=1&y=2"


async def test_a_handler_that_throws_gives_the_visitor_a_500_without_the_stack(alice):
    from vals.evaluations.batch import writer
    from vals.evaluations.models import Evaluation

    code = "export default () => { throw new Error('secret internals'); };"
    await sync_to_async(make_val)(alice, name="broken", type="http", code=code)
    status, _, body = await full_request("alice-broken.web.localhost:8000")
    assert status == 500
    assert b"secret internals" not in body
    await writer.drain()
    evaluation = await Evaluation.objects.aget(trigger="http")
    assert evaluation.status == "error" and "secret internals" in evaluation.error["message"]
    assert evaluation.principal_id == alice.pk


async def test_http_val_logs_are_capped_and_storable_like_any_evaluations(alice, settings):
    from vals.evaluations.batch import writer
    from vals.evaluations.models import Evaluation

    settings.EVALUATION_MAX_LOG_BYTES = 5_000
    code = 'export default () => { console.log("nul\\u0000here"); for (let i = 0; i < 2000; i++) console.log(""); return new Response("ok"); };'
    await sync_to_async(make_val)(alice, name="noisy", type="http", code=code)
    status, _, body = await full_request("alice-noisy.web.localhost:8000")
    assert (status, body) == (200, b"ok")
    await writer.drain()
    evaluation = await Evaluation.objects.aget(trigger="http")
    assert "\x00" not in evaluation.logs[0]["message"]
    assert len(evaluation.logs) < 200 and evaluation.logs[-1]["message"].startswith("logs truncated")


async def test_a_request_with_an_overlong_method_is_still_recorded_with_the_others(alice):
    from vals.evaluations.batch import writer
    from vals.evaluations.models import Evaluation

    await sync_to_async(make_val)(alice, name="echo", type="http", code=ECHO_VAL)
    await full_request("alice-echo.web.localhost:8000", "/a", "EXTRAORDINARILYLONGMETHOD")
    await full_request("alice-echo.web.localhost:8000", "/b")
    await writer.drain()
    recorded = [e async for e in Evaluation.objects.filter(trigger="http").order_by("http_path")]
    assert [(e.http_method, e.http_path) for e in recorded] == [("EXTRAORDIN", "/a"), ("GET", "/b")]


def test_a_record_the_database_refuses_costs_only_itself_not_its_batch(alice):
    from vals.evaluations.batch import write
    from vals.evaluations.models import Evaluation

    val = make_val(alice, name="echo", type="http", code=ECHO_VAL)
    record = {"val_id": val.pk, "val_version": 1, "principal_id": alice.pk, "trigger": "http", "status": "success",
              "started_at": timezone.now(), "http_method": "GET"}
    refused = {**record, "principal_id": None}  # NOT NULL
    write([{**record, "http_path": "/a"}, refused, {**record, "http_path": "/b"}])
    assert sorted(Evaluation.objects.values_list("http_path", flat=True)) == ["/a", "/b"]


async def test_a_secret_deleted_or_changed_is_gone_from_the_very_next_request(alice):
    """A warm process kept the secrets it was started with: a visitor who came back every
    few seconds kept a deleted secret alive in it, shown unredacted in the owner's logs."""
    from accounts.secrets.models import Secret

    await sync_to_async(Secret.put)(alice, "K", "old-secret-value-1111")
    await sync_to_async(make_val)(alice, name="env", type="http", code='export default () => new Response(String(Deno.env.get("K")));')
    assert await request("alice-env.web.localhost:8000") == (200, b"old-secret-value-1111")

    await sync_to_async(Secret.put)(alice, "K", "new-secret-value-2222")
    assert await request("alice-env.web.localhost:8000") == (200, b"new-secret-value-2222")

    await Secret.objects.filter(owner=alice, name="K").adelete()
    assert await request("alice-env.web.localhost:8000") == (200, b"undefined")
