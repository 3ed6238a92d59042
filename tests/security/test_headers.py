"""Every app page says: never frame me, run only my own scripts, don't sniff types, send
no referrer elsewhere. HTTP vals' responses don't get the app's policy: they are the
val's own pages, on their own origins (tests/browser/test_http_val_origin.py shows a
val's inline script running and never seeing the app's cookies)."""

import asyncio
import importlib
import re

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.conftest import HTMX
from tests.factory import make_val


@pytest.fixture
def pages(alice):
    val = make_val(alice, name="hello", type="http")
    return ["/", "/v/alice/hello", "/v/alice/hello/history", "/u/alice", "/accounts/login/", "/settings/tokens", "/no/such/page", "/v1/openapi.json", "/v1/docs", f"/vals/{val.pk}/like"]


def directives(policy):
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_every_app_page_refuses_framing_and_foreign_scripts(alice_client, pages):
    for url in pages:
        response = alice_client.post(url, **HTMX) if url.endswith("/like") else alice_client.get(url)
        assert response.status_code in (200, 302, 404), url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", url
        policy = directives(response["Content-Security-Policy"])
        assert policy["frame-ancestors"] == ["'none'"], url
        assert policy["script-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"], url
        assert policy["form-action"] == ["'self'"], url
        assert not any("unsafe" in source for sources in policy.values() for source in sources), url


def test_styles_need_a_fresh_nonce_and_only_the_val_page_hands_it_out(anonymous_client, alice):
    make_val(alice, name="hello")
    first, second = anonymous_client.get("/v/alice/hello"), anonymous_client.get("/v/alice/hello")
    nonces = []
    for response in (first, second):
        style = directives(response["Content-Security-Policy"])["style-src"]
        assert style[0] == "'self'" and re.fullmatch(r"'nonce-[A-Za-z0-9_-]{24}'", style[1])
        nonce = style[1][len("'nonce-") : -1]
        assert f'<meta name="csp-nonce" nonce="{nonce}">' in response.content.decode()
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert b"csp-nonce" not in anonymous_client.get("/").content


def test_the_only_frames_allowed_are_http_vals_own_origins(anonymous_client, settings):
    policy = directives(anonymous_client.get("/")["Content-Security-Policy"])
    assert policy["frame-src"] == ["'self'", f"{settings.HTTP_VAL_SCHEME}://*.{settings.HTTP_VAL_DOMAIN}"]


async def asgi_get(application, host, path="/"):
    sent, requests = [], [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the visitor stays until the response is sent

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
        "scheme": "http", "headers": [(b"host", host.encode())], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        "http_version": "1.1", "root_path": "", "asgi": {"version": "3.0"},
    }
    await application(scope, receive, send)
    return sent[0]["status"], {name.decode().lower() for name, _ in sent[0]["headers"]}


@pytest.mark.django_db(transaction=True)
async def test_http_val_origins_are_answered_before_the_apps_headers_are_added(alice):
    """The gateway answers a val's host itself, so the app's policy never constrains a val's pages."""
    # Imported in asgiref's worker thread, as tests/test_websocket_auth.py does: importing
    # it touches the database, which an async test's own thread may not.
    application = (await sync_to_async(importlib.import_module)("valtown.asgi")).application

    status, headers = await asgi_get(application, "alice-nothing.web.localhost:8000")
    assert status == 404
    assert "content-security-policy" not in headers and "x-frame-options" not in headers
    status, headers = await asgi_get(application, "localhost:8000", "/no/such/page")
    assert status == 404
    assert {"content-security-policy", "x-frame-options"} <= headers
    # The lookups ran in asgiref's worker thread; its connections would outlive the test database.
    await sync_to_async(connections.close_all)()
