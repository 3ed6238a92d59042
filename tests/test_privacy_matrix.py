"""Every page and endpoint × {anonymous, owner, another user} × {public, unlisted, private}.

A private val of someone else is a 404 everywhere, indistinguishable from a val
that does not exist. Unlisted vals open by URL but are never listed.
"""

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.factory import make_user, make_val
from vals.models import Val

PERSONAS = ["anonymous", "owner", "stranger"]
PRIVACIES = ["public", "unlisted", "private"]


@pytest.fixture
def world(db):
    alice = make_user("alice")
    bob = make_user("bob")
    clients = {"anonymous": Client(), "owner": Client(), "stranger": Client()}
    clients["owner"].force_login(alice)
    clients["stranger"].force_login(bob)
    vals = {}
    for privacy in PRIVACIES:
        val = make_val(alice, name=f"{privacy}Val", code=f"// {privacy} code marker\n", privacy=privacy, readme=f"zanzibar {privacy}")
        val.save_version(f"// {privacy} code marker v1\n")
        vals[privacy] = val
    return {"alice": alice, "bob": bob, "clients": clients, "vals": vals}


def without_csrf_tokens(html):
    return re.sub(rb'"X-CSRFToken": "[^"]*"|name="csrfmiddlewaretoken" value="[^"]*"', b"", html)


def can_see(persona, privacy):
    return persona == "owner" or privacy != "private"


def can_reach_by_id(persona, privacy):
    """Ids are counted: by a bare id an unlisted val is its owner's alone (its page's forms
    send its name too: tests/security/test_unlisted_vals_by_id.py)."""
    return persona == "owner" or privacy == "public"


def is_listed_for(persona, privacy):
    return privacy == "public" or persona == "owner"


READ_PAGES = {
    "page": lambda v: f"/v/alice/{v.name}",
    "old version": lambda v: f"/v/alice/{v.name}?v=0",
    "history": lambda v: f"/v/alice/{v.name}/history",
    "diff": lambda v: f"/v/alice/{v.name}/diff?a=0&b=1",
    "raw source": lambda v: f"/v/alice/{v.name}.ts",
    "raw old version": lambda v: f"/v/alice/{v.name}.ts?v=0",
    "page, other case": lambda v: f"/v/ALICE/{v.name.upper()}",
}


@pytest.mark.parametrize("page", READ_PAGES)
@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_reading_pages_follow_the_privacy_rules(world, persona, privacy, page):
    client = world["clients"][persona]
    url = READ_PAGES[page](world["vals"][privacy])
    response = client.get(url)
    if can_see(persona, privacy):
        assert response.status_code == 200
        assert f"{privacy}Val".encode() in response.content or f"{privacy} code marker".encode() in response.content
        if page != "history":
            assert f"{privacy} code marker".encode() in response.content
    else:
        missing = client.get(url.replace(f"{privacy}Val", "noSuchVal").replace(f"{privacy.upper()}VAL", "NOSUCHVAL"))
        assert response.status_code == missing.status_code == 404
        assert without_csrf_tokens(response.content) == without_csrf_tokens(missing.content)
        assert b"code marker" not in response.content


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_profile_lists_follow_the_privacy_rules(world, persona, privacy):
    response = world["clients"][persona].get("/u/alice")
    assert response.status_code == 200
    assert (f"{privacy}Val".encode() in response.content) == is_listed_for(persona, privacy)


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_search_results_follow_the_privacy_rules(world, persona, privacy):
    response = world["clients"][persona].get("/", {"q": "zanzibar"})
    assert response.status_code == 200
    assert (f"{privacy}Val".encode() in response.content) == is_listed_for(persona, privacy)


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_the_home_page_lists_only_public_vals(world, persona, privacy):
    response = world["clients"][persona].get("/")
    assert (f"{privacy}Val".encode() in response.content) == (privacy == "public")


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_forking_follows_the_privacy_rules(world, persona, privacy):
    val = world["vals"][privacy]
    response = world["clients"][persona].post(reverse("val_fork", args=[val.pk]), {"val": f"{val.owner.username}/{val.name}"})
    forks = Val.objects.filter(forked_from=val)
    if persona == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        assert not forks.exists()
    elif can_see(persona, privacy):
        assert response.status_code == 302
        assert forks.count() == 1
    else:
        assert response.status_code == 404
        assert not forks.exists()


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_liking_follows_the_privacy_rules(world, persona, privacy):
    val = world["vals"][privacy]
    response = world["clients"][persona].post(reverse("val_like", args=[val.pk]), {"val": f"{val.owner.username}/{val.name}"})
    val.refresh_from_db()
    if persona == "anonymous":
        assert response.status_code == 302 and val.like_count == 0
    elif can_see(persona, privacy):
        assert response.status_code == 302 and val.like_count == 1
    else:
        assert response.status_code == 404 and val.like_count == 0


OWNER_ACTIONS = {
    "save": lambda v: ("post", reverse("val_save", args=[v.pk]), {"name": v.name, "type": "script", "privacy": v.privacy, "code": "hacked", "readme": ""}),
    "revert": lambda v: ("post", reverse("val_revert", args=[v.pk, 0]), {}),
    "delete page": lambda v: ("get", reverse("val_delete", args=[v.pk]), {}),
    "delete": lambda v: ("post", reverse("val_delete", args=[v.pk]), {}),
}


@pytest.mark.parametrize("action", OWNER_ACTIONS)
@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_only_the_owner_can_change_a_val(world, persona, privacy, action):
    val = world["vals"][privacy]
    method, url, data = OWNER_ACTIONS[action](val)
    response = getattr(world["clients"][persona], method)(url, data)
    if persona == "owner":
        assert response.status_code in (200, 302)
        return
    if persona == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    elif can_reach_by_id(persona, privacy):
        assert response.status_code == 403
    else:
        assert response.status_code == 404
    val = Val.objects.get(pk=val.pk)
    assert val.code == f"// {privacy} code marker v1\n" and val.version == 1


@pytest.mark.parametrize("privacy", PRIVACIES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_fork_lists_follow_the_privacy_rules(world, persona, privacy):
    """A fork appears on the original's page only for those who may list it."""
    carol = make_user("carol")
    parent = make_val(carol, name="parent")
    parent.fork_for(world["alice"]).delete()
    fork = Val.create(owner=world["alice"], name=f"{privacy}Fork", code="x", privacy=privacy, forked_from=parent, forked_from_version=0)
    response = world["clients"][persona].get(parent.get_absolute_url())
    assert (fork.name.encode() in response.content) == is_listed_for(persona, privacy)


def test_a_fork_of_a_private_val_does_not_reveal_its_parent(world):
    parent = world["vals"]["private"]
    fork = parent.fork_for(world["alice"])
    fork.privacy = "public"
    fork.save()
    fork.rename("myCopy")
    response = world["clients"]["stranger"].get(fork.get_absolute_url())
    assert response.status_code == 200
    assert b"privateVal" not in response.content
    assert b"forked from a val you can" in response.content
