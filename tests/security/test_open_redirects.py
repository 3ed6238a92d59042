"""No redirect leaves the site: ?next= on log in, log out and sign up, a signed-in visit
to the login page, the admin's login, and Django's own slash-appending redirects. An HTTP
val's origin counts as leaving: anyone can put a page there that looks like ours."""

from urllib.parse import urlparse

import pytest
from django.test import Client

from tests.factory import make_user

ELSEWHERE = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "https:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    " //evil.example",
    "javascript:alert(1)",
    "http://testserver@evil.example/",
    "http://testserver.evil.example/",
    "http://alice-phish.web.localhost:8000/",
    # In ALLOWED_HOSTS (".localhost", "127.0.0.1"), which allauth alone would accept:
    "http://alice-phish.web.localhost/",
    "https://127.0.0.1/",
]


pytestmark = pytest.mark.usefixtures("fresh_rate_limits")


def assert_stays_on_site(response):
    assert response.status_code in (301, 302), response.status_code
    location = response.get("Location") or response.get("HX-Redirect")
    target = urlparse(location)
    assert target.scheme in ("", "http") and target.netloc in ("", "testserver"), location
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location


@pytest.mark.parametrize("target", ELSEWHERE)
def test_logging_in_never_leaves_the_site(db, target):
    make_user("alice")
    response = Client().post("/accounts/login/", {"login": "alice", "password": "correct horse 1", "next": target})
    assert_stays_on_site(response)


@pytest.mark.parametrize("target", ELSEWHERE)
def test_the_login_page_never_sends_a_signed_in_visitor_away(alice_client, target):
    response = alice_client.get("/accounts/login/", {"next": target})
    assert_stays_on_site(response)


@pytest.mark.parametrize("target", ELSEWHERE)
def test_logging_out_never_leaves_the_site(alice_client, target):
    assert_stays_on_site(alice_client.post("/accounts/logout/", {"next": target}))


@pytest.mark.parametrize("target", ELSEWHERE)
def test_signing_up_never_leaves_the_site(db, target):
    form = {"username": "newcomer", "email": "newcomer@example.com", "password1": "a-long-unique-passphrase-42", "password2": "a-long-unique-passphrase-42"}
    response = Client().post("/accounts/signup/", {**form, "next": target})
    assert_stays_on_site(response)


def test_a_next_inside_the_site_is_still_followed(db):
    make_user("alice")
    response = Client().post("/accounts/login/", {"login": "alice", "password": "correct horse 1", "next": "/settings/tokens?x=1"})
    assert response["Location"] == "/settings/tokens?x=1"


def test_a_login_required_page_sends_back_to_itself_only(anonymous_client):
    response = anonymous_client.get("/settings/tokens")
    assert response["Location"] == "/accounts/login/?next=/settings/tokens"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_the_admin_login_never_leaves_the_site(db, target):
    make_user("root", is_staff=True, is_superuser=True)
    response = Client().post("/admin/login/", {"username": "root", "password": "correct horse 1", "next": target})
    assert_stays_on_site(response)


@pytest.mark.parametrize("path", ["//evil.example", "//evil.example/%2e%2e", "/\\evil.example/settings"])
def test_slash_appending_never_redirects_off_site(anonymous_client, path):
    # PATH_INFO as the server would receive it; the test client would read "//x" as a host.
    response = anonymous_client.get("/", PATH_INFO=path)
    if response.status_code in (301, 302):
        assert_stays_on_site(response)
    else:
        assert response.status_code == 404
