"""A val of twenty thousand imports costs a few queries, not one each (finding 11).

A val page listed its imports with one query per import line, and "used by" read the
code of every candidate: a val of 20,000 import lines cost 36 s per anonymous page view.
"""

import pytest

from tests.factory import make_user, make_val
from vals.module_host import needs_library_worker

pytestmark = pytest.mark.django_db

LINES = 20_000


def many_imports(username, count=LINES):
    return "".join(f'import * as m{n} from "/v/{username}/lib{n}.ts";\n' for n in range(count)) + "export default 1;\n"


def test_a_val_of_twenty_thousand_imports_is_shown_with_a_few_queries(anonymous_client, django_assert_max_num_queries):
    bob = make_user("bob")
    for n in range(60):
        make_val(bob, name=f"lib{n}")
    make_val(bob, name="huge", code=many_imports("bob"))

    with django_assert_max_num_queries(15):
        page = anonymous_client.get("/v/bob/huge")

    assert page.status_code == 200
    listed = page.context["imports"]
    assert len(listed) == 50, "the list is capped"
    assert [val.name for val, _ in listed[:3]] == ["lib0", "lib1", "lib2"]


def test_used_by_is_one_query_whatever_the_importers_hold(anonymous_client, django_assert_max_num_queries):
    bob = make_user("bob")
    make_val(bob, name="lib")
    alice = make_user("alice")
    for n in range(5):
        make_val(alice, name=f"user{n}", code='import "/v/bob/lib.ts";\n' + many_imports("nobody", 2_000))

    with django_assert_max_num_queries(15):
        page = anonymous_client.get("/v/bob/lib")

    assert sorted(val.name for val in page.context["used_by"]) == [f"user{n}" for n in range(5)]


def test_used_by_follows_saves_and_ignores_what_only_looks_like_an_import():
    bob = make_user("bob")
    lib = make_val(bob, name="lib")
    alice = make_user("alice")
    importer = make_val(alice, name="user", code='import "/v/bob/lib.ts";\n')
    make_val(alice, name="mention", code='// see /v/bob/lib.ts\nconst s = "import \\"/v/bob/lib.ts\\"";\n')
    assert [val.name for val in lib.used_by_visible_to(alice)] == ["user"]

    importer.save_version("export default 2;\n")
    assert list(lib.used_by_visible_to(alice)) == []


def test_deciding_on_restricted_library_mode_takes_a_query_per_level_of_imports(django_assert_max_num_queries):
    alice = make_user("alice")
    for n in range(100):
        make_val(alice, name=f"lib{n}")
    code = many_imports("alice")

    with django_assert_max_num_queries(3):
        assert needs_library_worker(code, alice.pk) is False
