"""An unlisted val is open to whoever knows its name, not to whoever counts its id.

The attack review listed every unlisted val, code and all, by walking /v1/vals/1, 2, 3
with a read-only token; the page's forms (fork, like, run) took the bare id too. Ids
are counted, so by id an unlisted val now needs its name as well, which its page's
forms send; through the API it is reached by name (/v1/alias).
"""

import pytest
from django.test import Client

from accounts.models import ApiToken
from tests.conftest import HTMX
from tests.factory import make_user, make_val
from vals.evaluations.models import Evaluation
from vals.models import Val

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft():
    return make_val(make_user("alice"), name="draft", code="export default () => 'layoffs';\n", privacy=Val.Privacy.UNLISTED)


def test_the_api_doesnt_give_an_unlisted_val_by_its_id_to_strangers_but_by_its_name(draft):
    _, raw = ApiToken.issue(make_user("bob"), "t", "read")
    bob = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    for path in [f"/v1/vals/{draft.pk}", f"/v1/vals/{draft.pk}/versions", f"/v1/vals/{draft.pk}/versions/0"]:
        response = bob.get(path)
        assert response.status_code == 404 and response.content == bob.get("/v1/vals/999999").content, path
    assert bob.get("/v1/alias/alice/draft").json()["code"] == "export default () => 'layoffs';\n"


def test_the_pages_forms_reach_an_unlisted_val_by_id_only_with_its_name(draft, bob_client):
    for path in [f"/vals/{draft.pk}/fork", f"/vals/{draft.pk}/like"]:
        assert bob_client.post(path, **HTMX).status_code == 404, path
    assert bob_client.post(f"/vals/{draft.pk}/like", {"val": "alice/draft"}, **HTMX).status_code == 200
    assert bob_client.post(f"/vals/{draft.pk}/fork", {"val": "Alice/Draft"}, **HTMX).status_code == 200
    page = bob_client.get("/v/alice/draft").content.decode()
    assert page.count('name="val" value="alice/draft"') == 3  # fork, like and run send it


def test_the_owner_reaches_their_unlisted_val_by_id(draft):
    _, raw = ApiToken.issue(draft.owner, "t", "read")
    assert Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(f"/v1/vals/{draft.pk}").status_code == 200


def test_a_val_made_private_after_bob_ran_it_shows_him_nothing_of_its_name(bob_client, bob):
    val = make_val(make_user("alice"), name="plans")
    evaluation = Evaluation.objects.create(val=val, val_version=0, principal=bob, status="success")
    val.rename("secret_acquisition_of_acme")
    val.privacy = Val.Privacy.PRIVATE
    val.save()

    for page in [bob_client.get("/settings/evaluations"), bob_client.get(f"/evaluations/{evaluation.pk}")]:
        text = page.content.decode()
        assert page.status_code == 200
        assert "secret_acquisition_of_acme" not in text and "a val you can no longer see" in text
