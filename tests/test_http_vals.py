"""HTTP vals on their own origins: routing, privacy, and isolation from the app's cookies."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

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
