import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from tests.factory import make_val
from vals.models import Val, ValVersion


def test_a_new_val_starts_at_version_0(alice):
    val = make_val(alice, code="export default 1;")
    assert val.version == 0
    assert list(val.versions.values_list("number", "code")) == [(0, "export default 1;")]


def test_each_changed_save_makes_the_next_version(alice):
    val = make_val(alice, code="v0")
    val.save_version("v1")
    version, created = val.save_version("v2")
    assert created and version.number == 2
    assert val.code == "v2"
    assert [v.number for v in val.versions.all()] == [2, 1, 0]


def test_saving_the_same_code_makes_no_new_version(alice):
    val = make_val(alice, code="same")
    version, created = val.save_version("same")
    assert not created
    assert version.number == 0
    assert val.versions.count() == 1


def test_versions_are_immutable(alice):
    val = make_val(alice, code="original")
    version = val.versions.get(number=0)
    version.code = "rewritten"
    with pytest.raises(ValidationError):
        version.save()
    with pytest.raises(ValidationError):
        ValVersion.objects.filter(val=val).update(code="rewritten")
    with pytest.raises(ValidationError):
        version.delete()
    with pytest.raises(ValidationError):
        ValVersion.objects.filter(val=val).delete()
    assert val.versions.get(number=0).code == "original"


def test_deleting_a_val_deletes_its_versions(alice):
    val = make_val(alice)
    val.save_version("changed")
    val.delete()
    assert ValVersion.objects.count() == 0


def test_revert_saves_the_old_code_as_a_new_version(alice):
    val = make_val(alice, code="first")
    val.save_version("second")
    version, created = val.revert_to(0)
    assert created and version.number == 2 and version.code == "first"
    assert val.versions.get(number=1).code == "second"


def test_renaming_keeps_the_history(alice):
    val = make_val(alice, name="before", code="a")
    val.save_version("b")
    val.rename("after")
    val = Val.objects.get(pk=val.pk)
    assert val.name == "after"
    assert [v.code for v in val.versions.all()] == ["b", "a"]


def test_val_names_are_unique_per_owner_ignoring_case(alice, bob):
    make_val(alice, name="Hello")
    with pytest.raises(ValidationError):
        make_val(alice, name="hello")
    make_val(bob, name="hello")


def test_renaming_onto_a_taken_name_is_refused(alice):
    make_val(alice, name="taken")
    other = make_val(alice, name="other")
    with pytest.raises(ValidationError):
        other.rename("TAKEN")


@pytest.mark.parametrize("bad_name", ["", "1abc", "has-dash", "has space", "dollar$", "class", "x" * 49, "ünïcode"])
def test_val_names_must_be_javascript_identifiers(alice, bad_name):
    with pytest.raises(ValidationError):
        make_val(alice, name=bad_name)


@override_settings(VAL_MAX_CODE_BYTES=100)
def test_code_over_the_limit_is_refused_with_the_limit_named(alice):
    val = make_val(alice, code="ok")
    with pytest.raises(ValidationError) as error:
        val.save_version("x" * 101)
    assert "the limit is 100 bytes" in str(error.value)
    assert Val.objects.get(pk=val.pk).code == "ok"


def test_a_fork_copies_code_type_and_readme_and_records_lineage(alice, bob):
    original = make_val(alice, name="foo", code="v0", type=Val.Type.HTTP, readme="Read me")
    original.save_version("v1")
    fork = original.fork_for(bob)
    assert (fork.owner, fork.name, fork.code, fork.type, fork.readme) == (bob, "foo", "v1", "http", "Read me")
    assert fork.forked_from == original and fork.forked_from_version == 1
    assert fork.version == 0
    assert list(original.forks.all()) == [fork]


def test_a_fork_takes_a_suffix_when_the_name_is_taken(alice, bob):
    original = make_val(alice, name="foo")
    make_val(bob, name="foo")
    assert original.fork_for(bob).name == "foo_1"
    assert original.fork_for(bob).name == "foo_2"


def test_nobody_can_fork_a_private_val_of_someone_else(alice, bob):
    secret = make_val(alice, name="secret", privacy=Val.Privacy.PRIVATE)
    with pytest.raises(PermissionError):
        secret.fork_for(bob)
    assert secret.fork_for(alice).name == "secret_1"


def test_likes_are_counted_once_per_user(alice, bob):
    val = make_val(alice)
    val.like_by(bob)
    val.like_by(bob)
    val.like_by(alice)
    assert val.like_count == 2
    val.unlike_by(bob)
    val.unlike_by(bob)
    assert Val.objects.get(pk=val.pk).like_count == 1


def test_lists_show_only_public_vals_and_your_own(alice, bob):
    public = make_val(alice, name="pub")
    unlisted = make_val(alice, name="unl", privacy=Val.Privacy.UNLISTED)
    private = make_val(alice, name="pri", privacy=Val.Privacy.PRIVATE)
    assert set(Val.objects.listed_for(bob)) == {public}
    assert set(Val.objects.listed_for(alice)) == {public, unlisted, private}
    assert set(Val.objects.visible_to(bob)) == {public, unlisted}


def test_search_finds_public_vals_by_name_readme_and_code(alice, db):
    by_name = make_val(alice, name="weatherBot")
    by_readme = make_val(alice, name="b", readme="Sends a daily haiku")
    by_code = make_val(alice, name="c", code="const zebraCount = 42;")
    make_val(alice, name="d", code="nothing here")
    assert list(Val.objects.search("weather")) == [by_name]
    assert list(Val.objects.search("haiku")) == [by_readme]
    assert list(Val.objects.search("zebraCount")) == [by_code]
    assert list(Val.objects.search("zebra")) == [by_code]
    assert list(Val.objects.search("   ")) == []


def test_search_sees_saved_changes(alice):
    val = make_val(alice, name="x", code="old words")
    val.save_version("fresh penguin")
    assert list(Val.objects.search("penguin")) == [val]
    assert list(Val.objects.search("old")) == []


def test_search_treats_punctuation_as_plain_text(alice):
    val = make_val(alice, name="x", code="hello")
    for hostile in ['"', "' OR 1=1 --", "*", "NEAR(", "a:*|b", "\\", "!&|()"]:
        assert list(Val.objects.search(hostile)) == []
    assert list(Val.objects.search('"hello"')) == [val]
    assert list(Val.objects.search("hello*")) == [val]


def test_search_uses_the_full_text_index(alice):
    from django.db import connection

    make_val(alice, name="indexed", code="unique words")
    sql, params = Val.objects.search("unique").query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "vals_val_search_document_idx" in plan
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(row) for row in cursor.fetchall())
            assert "vals_val_fts VIRTUAL TABLE INDEX" in plan


def test_the_search_index_repairs_itself_after_a_table_rebuild(alice):
    from django.db import connection

    from vals import search_index

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER vals_val_fts_insert")
    search_index.ensure(connection)
    val = make_val(alice, name="afterRepair", code="phoenix")
    assert list(Val.objects.search("phoenix")) == [val]
