"""Every URL the app routes refuses a POST without a CSRF token, htmx or not, whoever
is signed in; the few exceptions are listed here with the reason they are safe.

The walk goes over the whole URLconf, so a view added later is covered without anyone
remembering to add it.
"""

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch

from accounts.models import ApiToken
from accounts.secrets.models import Secret
from tests.conftest import HTMX
from tests.factory import make_user, make_val
from vals.api import api
from vals.evaluations.models import Evaluation

CSRF_FAILED = b"CSRF verification failed"

# Routes that take no CSRF token, and why that is safe.
EXEMPT = {
    # Authenticated by a bearer token in a header, which a browser never adds by itself.
    "inbound_email",
}


def walk(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield (f"{namespace}:" if namespace else "") + pattern.name, pattern


def parameters(pattern):
    route = pattern.pattern
    return list(getattr(route, "converters", {}) or route.regex.groupindex)


@pytest.fixture
def world(db):
    alice = make_user("alice")
    val = make_val(alice, name="hello")
    token, _ = ApiToken.issue(alice, "laptop")
    Secret.put(alice, "API_KEY", "s3cret")
    evaluation = Evaluation.objects.create(val=val, val_version=0, principal=alice, status="success")
    samples = {
        "val_id": val.pk,
        "token_id": token.pk,
        "evaluation_id": evaluation.pk,
        "number": 0,
        "username": "alice",
        "name": "hello",
    }
    return {"alice": alice, "samples": samples}


def app_urls(samples):
    """(name, url) for every route outside the admin and the token-authenticated API."""
    urls = []
    for name, pattern in walk(get_resolver().url_patterns):
        if name.startswith(("admin:", "api:")):
            continue
        kwargs = {key: samples.get(key, "1") for key in parameters(pattern)}
        try:
            urls.append((name, reverse(name, kwargs=kwargs)))
        except NoReverseMatch:
            urls.append((name, reverse(name, kwargs={key: "x" for key in kwargs})))
    return urls


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["form", "htmx"])
@pytest.mark.parametrize("who", ["alice", "anonymous"])
def test_every_route_refuses_a_post_without_a_csrf_token(world, who, headers):
    client = Client(enforce_csrf_checks=True)
    if who == "alice":
        client.force_login(world["alice"])
    urls = app_urls(world["samples"])
    assert {"val_save", "val_run", "val_delete", "secrets", "revoke_token", "account_login", "account_logout"} <= {n for n, _ in urls}
    unprotected = []
    for name, url in urls:
        response = client.post(url, {"code": "x", "name": "hello"}, **headers)
        if name in EXEMPT:
            assert response.status_code in (401, 405), (name, url, response.status_code)
        elif response.status_code != 403 or CSRF_FAILED not in response.content:
            unprotected.append((name, url, response.status_code))
    assert unprotected == []


def test_a_token_from_the_page_is_accepted(world):
    """The other half: pages carry the token htmx sends back, and that passes."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["alice"])
    page = client.get("/v/alice/hello").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = client.post(
        f"/vals/{world['samples']['val_id']}/save",
        {"name": "hello", "type": "script", "privacy": "public", "code": "export const x = 1;\n", "readme": ""},
        HTTP_X_CSRFTOKEN=token,
        **HTMX,
    )
    assert response.status_code == 200
    assert "valSaved" in response["HX-Trigger"]


def test_a_post_from_another_site_is_refused_even_with_a_valid_token(world, settings):
    """Over HTTPS, Django also checks the Origin: a val's page or another site can't post."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["alice"])
    page = client.get("/v/alice/hello", secure=True).content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    for origin in ("https://evil.example", "https://alice-hello.web.localhost:8000"):
        response = client.post(
            f"/vals/{world['samples']['val_id']}/like", HTTP_X_CSRFTOKEN=token, HTTP_ORIGIN=origin, secure=True, **HTMX
        )
        assert response.status_code == 403 and CSRF_FAILED in response.content


def test_the_api_ignores_the_session_cookie_so_needs_no_csrf_token(world):
    """/v1 is exempt from CSRF because a browser's cookie carries no authority there: every
    operation answers a signed-in browser exactly as it answers an anonymous one."""
    signed_in = Client()
    signed_in.force_login(world["alice"])
    anonymous = Client()
    schema = api.get_openapi_schema()
    checked = 0
    for path, operations in schema["paths"].items():
        url = re.sub(r"\{[^}]+\}", "999999", path)
        for method in operations:
            if method not in ("post", "put", "patch", "delete"):
                continue
            mine = getattr(signed_in, method)(url, "{}", content_type="application/json")
            theirs = getattr(anonymous, method)(url, "{}", content_type="application/json")
            assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content), (method, url)
            assert mine.status_code in (400, 401, 404), (method, url, mine.status_code)
            checked += 1
    assert checked >= 8
