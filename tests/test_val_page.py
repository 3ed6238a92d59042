from django.test import override_settings
from django.urls import reverse

from tests.conftest import HTMX
from tests.factory import make_user, make_val
from vals.models import Val


def save_data(val, **changes):
    data = {"name": val.name, "type": val.type, "privacy": val.privacy, "readme": val.readme, "code": val.code}
    data.update(changes)
    return data


def test_the_owner_gets_the_editor(alice_client, alice):
    val = make_val(alice, name="foo")
    response = alice_client.get("/v/alice/foo")
    assert b'id="val-editor-form"' in response.content
    assert b"codemirror-6" in response.content


def test_others_get_the_code_without_the_editor(bob_client, alice):
    make_val(alice, name="foo", code="const shown = 1;")
    response = bob_client.get("/v/alice/foo")
    assert b'id="val-editor-form"' not in response.content
    assert b"const shown = 1;" in response.content


def test_the_page_shows_author_version_likes_forks_and_readme(anonymous_client, alice, bob):
    val = make_val(alice, name="foo", readme="# Big title\n\nSome *words*.")
    val.save_version("v1")
    val.like_by(bob)
    val.fork_for(bob)
    content = anonymous_client.get("/v/alice/foo").content.decode()
    assert "@alice" in content and "version 1" in content
    assert '<span class="count">1</span>' in content
    assert "<h1>Big title</h1>" in content and "<em>words</em>" in content
    assert 'href="/v/bob/foo"' in content


def test_readmes_are_sanitised(anonymous_client, alice):
    make_val(alice, name="foo", readme='<script>alert(1)</script><img src=x onerror="alert(2)"> [x](javascript:alert(3))')
    content = anonymous_client.get("/v/alice/foo").content.decode()
    assert "<script>alert(1)" not in content
    assert "onerror" not in content
    assert "javascript:alert" not in content


def test_code_and_names_are_escaped(anonymous_client, alice):
    make_val(alice, name="foo", code="</pre><script>alert(1)</script>")
    content = anonymous_client.get("/v/alice/foo").content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_an_old_version_is_shown_read_only(alice_client, alice):
    val = make_val(alice, name="foo", code="old code")
    val.save_version("new code")
    content = alice_client.get("/v/alice/foo?v=0").content.decode()
    assert "old code" in content and "new code" not in content
    assert "version 0 of 1" in content
    assert 'id="val-editor-form"' not in content
    assert "Revert to this version" in content


def test_a_missing_or_bad_version_is_404(anonymous_client, alice):
    make_val(alice, name="foo")
    assert anonymous_client.get("/v/alice/foo?v=7").status_code == 404
    assert anonymous_client.get("/v/alice/foo?v=abc").status_code == 404
    assert anonymous_client.get("/v/alice/foo.ts?v=-1").status_code == 404


def test_raw_source_is_typescript(anonymous_client, alice):
    val = make_val(alice, name="foo", code="export const a = 1;\n")
    val.save_version("export const a = 2;\n")
    latest = anonymous_client.get("/v/alice/foo.ts")
    assert latest["Content-Type"] == "application/typescript; charset=utf-8"
    assert latest.content == b"export const a = 2;\n"
    pinned = anonymous_client.get("/v/alice/foo.ts?v=0")
    assert pinned.content == b"export const a = 1;\n"
    assert "immutable" in pinned["Cache-Control"]


def test_saving_through_htmx_makes_a_new_version_without_a_reload(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, code="b"), **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger"] == "valSaved"
    assert b"Saved as version 1" in response.content
    assert Val.objects.get(pk=val.pk).code == "b"


def test_saving_unchanged_code_says_so(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val), **HTMX)
    assert b"no new version" in response.content
    assert Val.objects.get(pk=val.pk).version == 0


def test_saving_without_javascript_redirects_back(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, code="b"))
    assert response.status_code == 302 and response["Location"] == "/v/alice/foo"


def test_renaming_keeps_history_and_moves_the_url(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, name="bar", code="b"), **HTMX)
    assert response["HX-Replace-Url"] == "/v/alice/bar"
    assert alice_client.get("/v/alice/foo").status_code == 404
    assert alice_client.get("/v/alice/bar?v=0").status_code == 200


def test_privacy_type_and_readme_are_saved(alice_client, alice):
    val = make_val(alice, name="foo")
    alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, privacy="private", type="http", readme="Hi"), **HTMX)
    val.refresh_from_db()
    assert (val.privacy, val.type, val.readme) == ("private", "http", "Hi")


def test_a_bad_name_is_an_inline_error_and_nothing_is_saved(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, name="bad name!", code="unsaved work"), **HTMX)
    assert response.status_code == 200
    assert "HX-Trigger" not in response
    assert b"Not saved" in response.content and b"JavaScript identifier" in response.content
    val.refresh_from_db()
    assert (val.name, val.code) == ("foo", "a")


def test_a_duplicate_name_is_an_inline_error(alice_client, alice):
    make_val(alice, name="taken")
    val = make_val(alice, name="foo")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, name="Taken"), **HTMX)
    assert "You already have a val named “Taken”".encode() in response.content


@override_settings(VAL_MAX_CODE_BYTES=1024 * 1024)
def test_code_over_one_megabyte_is_refused_with_the_limit_named(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    too_big = "x" * (1024 * 1024 + 1)
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, code=too_big), **HTMX)
    assert b"the limit is 1 MB" in response.content
    assert Val.objects.get(pk=val.pk).code == "a"


def test_without_javascript_the_errors_keep_the_unsaved_text(alice_client, alice):
    val = make_val(alice, name="foo", code="a")
    response = alice_client.post(reverse("val_save", args=[val.pk]), save_data(val, name="1bad", code="my unsaved work"))
    assert response.status_code == 400
    assert b"my unsaved work" in response.content
    assert b"JavaScript identifier" in response.content


def test_history_lists_every_version(anonymous_client, alice):
    val = make_val(alice, name="foo", code="a")
    val.save_version("b")
    val.save_version("c")
    content = anonymous_client.get("/v/alice/foo/history").content.decode()
    for number in (0, 1, 2):
        assert f"?v={number}" in content


def test_diff_shows_what_changed_between_any_two_versions(anonymous_client, alice):
    val = make_val(alice, name="foo", code="line one\nline two\n")
    val.save_version("line one\nline 2\n")
    val.save_version("line one\nline 2\nline three\n")
    content = anonymous_client.get("/v/alice/foo/diff?a=0&b=2").content.decode()
    assert '<span class="removed">-line two</span>' in content
    assert '<span class="added">+line 2</span>' in content
    assert '<span class="added">+line three</span>' in content


def test_reverting_saves_the_old_code_as_a_new_version(alice_client, alice):
    val = make_val(alice, name="foo", code="first")
    val.save_version("second")
    response = alice_client.post(reverse("val_revert", args=[val.pk, 0]))
    assert response.status_code == 302
    val.refresh_from_db()
    assert (val.version, val.code) == (2, "first")


def test_deleting_asks_for_confirmation_first(alice_client, alice):
    val = make_val(alice, name="foo")
    page = alice_client.get(reverse("val_delete", args=[val.pk]))
    assert b"Yes, delete it" in page.content
    assert Val.objects.filter(pk=val.pk).exists()
    response = alice_client.post(reverse("val_delete", args=[val.pk]))
    assert response["Location"] == "/u/alice"
    assert not Val.objects.filter(pk=val.pk).exists()


def test_forking_lands_on_the_fork_with_its_lineage(bob_client, alice):
    val = make_val(alice, name="foo")
    val.save_version("v1")
    response = bob_client.post(reverse("val_fork", args=[val.pk]), follow=True)
    assert response.redirect_chain[-1][0] == "/v/bob/foo"
    assert b"forked from" in response.content and b"@alice/foo v1" in response.content


def test_liking_through_htmx_returns_the_button(bob_client, alice):
    val = make_val(alice, name="foo")
    response = bob_client.post(reverse("val_like", args=[val.pk]), **HTMX)
    assert b"\xe2\x99\xa5" in response.content and b'<span class="count">1</span>' in response.content
    response = bob_client.post(reverse("val_like", args=[val.pk]), **HTMX)
    assert b'<span class="count">0</span>' in response.content


def test_one_click_makes_a_val_of_each_type_from_its_template(alice_client, alice):
    for val_type, marker in [("script", "export default function main"), ("http", "req: Request"), ("cron", "interval"), ("email", "email")]:
        response = alice_client.post(reverse("new_val"), {"type": val_type})
        assert response.status_code == 302
        val = Val.objects.filter(owner=alice).latest("id")
        assert val.type == val_type and marker in val.code
        assert response["Location"] == val.get_absolute_url()


def test_anonymous_visitors_cannot_make_vals(anonymous_client):
    response = anonymous_client.post(reverse("new_val"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Val.objects.exists()


def test_search_returns_a_fragment_to_htmx(anonymous_client, alice):
    make_val(alice, name="weatherBot")
    response = anonymous_client.get("/", {"q": "weather"}, **HTMX)
    assert b"<html" not in response.content
    assert b"weatherBot" in response.content


def test_the_home_page_shows_newest_and_most_liked(anonymous_client, alice, bob):
    make_val(alice, name="firstVal")
    liked = make_val(alice, name="likedVal")
    liked.like_by(bob)
    content = anonymous_client.get("/").content.decode()
    newest, most_liked = content.split("Most liked")
    assert newest.index("likedVal") < newest.index("firstVal")
    assert "likedVal" in most_liked and "firstVal" not in most_liked


def test_the_admin_is_for_staff_only(alice_client, db):
    assert alice_client.get("/admin/").status_code == 302
    staff = make_user("staffer", is_staff=True, is_superuser=True)
    alice_client.force_login(staff)
    assert alice_client.get("/admin/").status_code == 200
    assert alice_client.get("/admin/vals/val/").status_code == 200


def test_search_results_are_paginated_keeping_the_query(anonymous_client, alice):
    for n in range(32):
        make_val(alice, name=f"zebra{n}")
    first = anonymous_client.get("/", {"q": "zebra"}).content.decode()
    assert "Page 1 of 2" in first and "?q=zebra&page=2" in first
    second = anonymous_client.get("/", {"q": "zebra", "page": 2}).content.decode()
    assert second.count('class="val-card"') == 2


def test_the_val_page_lists_what_a_val_imports_and_what_uses_it(alice, bob, anonymous_client):
    lib = make_val(bob, name="lib", code="export const x = 1;\n")
    make_val(alice, name="app", code='import { x } from "/v/bob/lib.ts?v=0";\nexport default () => x;\n')
    make_val(alice, name="hidden_app", code='import { x } from "/v/bob/lib.ts";\n', privacy="private")

    app_page = anonymous_client.get("/v/alice/app").content.decode()
    assert "Imports" in app_page and 'href="/v/bob/lib"' in app_page and "v0" in app_page

    lib_page = anonymous_client.get("/v/bob/lib").content.decode()
    assert "Used by" in lib_page and 'href="/v/alice/app"' in lib_page
    assert "hidden_app" not in lib_page
    assert f"{lib.import_url}?v=0" in lib_page
