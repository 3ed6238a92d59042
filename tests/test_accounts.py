import pytest
from django.core import mail

from accounts.models import User
from tests.factory import make_user


def sign_up(client, username, email=None, password="a-long-unique-passphrase-42"):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email or f"{username.lower()}@example.com", "password1": password, "password2": password},
    )


def test_a_visitor_signs_up_with_username_email_and_password(anonymous_client):
    response = sign_up(anonymous_client, "carol")
    assert response.status_code == 302
    user = User.objects.get(username="carol")
    assert user.email == "carol@example.com"
    assert anonymous_client.get("/").context["user"] == user


@pytest.mark.parametrize("reserved", ["admin", "settings", "api", "v1", "static", "Admin", "WWW"])
def test_reserved_usernames_are_rejected_with_a_clear_message(anonymous_client, reserved):
    response = sign_up(anonymous_client, reserved)
    assert response.status_code == 200
    assert "is reserved. Please choose another username." in response.content.decode()
    assert not User.objects.filter(username__iexact=reserved).exists()


@pytest.mark.parametrize("bad", ["has space", "slash/name", "dot.name", "émile", "-leading", "a", "x" * 40, "q?x"])
def test_usernames_must_be_url_safe(anonymous_client, bad):
    response = sign_up(anonymous_client, bad, email="someone@example.com")
    assert response.status_code == 200
    assert not User.objects.filter(email="someone@example.com").exists()


def test_usernames_are_unique_ignoring_case(anonymous_client, alice):
    response = sign_up(anonymous_client, "ALICE", email="other@example.com")
    assert response.status_code == 200
    assert b"That username is taken." in response.content
    assert User.objects.filter(username__iexact="alice").count() == 1


def test_the_database_refuses_case_variants_too(alice):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="Alice")


def test_a_user_logs_in_with_username_or_email_and_logs_out(anonymous_client, alice):
    response = anonymous_client.post("/accounts/login/", {"login": "alice", "password": "correct horse 1"})
    assert response.status_code == 302
    anonymous_client.post("/accounts/logout/")
    assert not anonymous_client.get("/").context["user"].is_authenticated
    response = anonymous_client.post("/accounts/login/", {"login": "alice@example.com", "password": "correct horse 1"})
    assert response.status_code == 302


def test_password_reset_sends_an_email(anonymous_client, alice):
    response = anonymous_client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "alice@example.com" in mail.outbox[0].to
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


def test_the_profile_shows_the_bio(anonymous_client, db):
    make_user("dana", bio="I write cron jobs.")
    response = anonymous_client.get("/u/dana")
    assert b"@dana" in response.content and b"I write cron jobs." in response.content


def test_profiles_are_found_ignoring_case(anonymous_client, alice):
    assert anonymous_client.get("/u/ALICE").status_code == 200
    assert anonymous_client.get("/u/nobody").status_code == 404


def test_a_user_edits_their_bio(alice_client, alice):
    response = alice_client.post("/settings/profile", {"bio": "Hello there"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.bio == "Hello there"


def test_settings_need_a_login(anonymous_client):
    response = anonymous_client.get("/settings/profile")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_signup_page_is_styled_like_the_site(anonymous_client):
    content = anonymous_client.get("/accounts/signup/").content.decode()
    assert "css/site.css" in content and "New val" not in content and "Sign up" in content
