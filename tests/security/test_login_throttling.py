"""Guessing passwords is throttled (allauth's rate limits, counted in the shared cache):
five wrong passwords lock one account for five minutes, ten lock out one address for a
minute, and a flood of sign-in posts gets 429."""

import pytest
from django.test import Client

from tests.factory import make_user

TOO_MANY = "Too many failed login attempts. Try again later."


pytestmark = pytest.mark.usefixtures("fresh_rate_limits")


def log_in(client, login, password, ip="203.0.113.7"):
    return client.post("/accounts/login/", {"login": login, "password": password}, REMOTE_ADDR=ip)


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(db):
    make_user("alice")
    attacker = Client()
    for _ in range(5):
        response = log_in(attacker, "alice", "guess")
        assert TOO_MANY not in response.content.decode()
    # From anywhere, the right password is refused too until the window passes.
    response = log_in(Client(), "alice", "correct horse 1", ip="198.51.100.2")
    assert response.status_code == 200
    assert TOO_MANY in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session


def test_changing_the_case_of_the_login_does_not_reset_the_count(db):
    make_user("alice")
    # Each guess from another address: the count is the account's, not the address's.
    for number, login in enumerate(("alice", "ALICE", "Alice", "aLiCe", "ALICE")):
        log_in(Client(), login, "guess", ip=f"198.51.100.{number}")
    assert TOO_MANY in log_in(Client(), "alice", "correct horse 1").content.decode()


def test_one_address_guessing_many_accounts_is_stopped(db):
    for number in range(11):
        make_user(f"user{number}")
    attacker = Client()
    for number in range(10):
        assert TOO_MANY not in log_in(attacker, f"user{number}", "guess").content.decode()
    assert TOO_MANY in log_in(attacker, "user10", "guess").content.decode()
    # Someone else, from another address, still signs in.
    assert log_in(Client(), "user10", "correct horse 1", ip="198.51.100.2").status_code == 302


def test_a_flood_of_sign_in_posts_gets_429(db):
    client = Client()
    statuses = [log_in(client, f"nobody{n}", "guess").status_code for n in range(31)]
    assert statuses[:30] == [200] * 30
    assert statuses[30] == 429


def test_a_successful_sign_in_does_not_use_up_the_accounts_tries(db):
    make_user("alice")
    for _ in range(10):
        assert log_in(Client(), "alice", "correct horse 1").status_code == 302
