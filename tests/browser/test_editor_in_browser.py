"""A newcomer signs up, writes a val in the real editor, saves it, and sees its history."""

import pytest

from vals.models import Val

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_up(page, live_server, username):
    page.goto(live_server.url + "/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", "a-long-unique-passphrase-42")
    page.fill("input[name=password2]", "a-long-unique-passphrase-42")
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")


def test_a_newcomer_writes_and_saves_a_val_in_the_editor(page, live_server):
    sign_up(page, live_server, "newcomer")
    page.click("text=+ New val")
    page.wait_for_selector(".cm-editor")
    val = Val.objects.get(owner__username="newcomer")
    assert page.url.endswith(val.get_absolute_url())

    # Typing into CodeMirror marks the page dirty and warns before leaving.
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.type("\nexport const answer = 42;")
    assert page.is_visible("#dirty-marker")

    # Ctrl+S saves through htmx, without a reload.
    page.evaluate("window.__noReload = true")
    page.keyboard.press("Control+s")
    page.wait_for_selector("text=Saved as version 1")
    assert page.evaluate("window.__noReload") is True
    assert page.is_hidden("#dirty-marker")
    val.refresh_from_db()
    assert val.version == 1 and "export const answer = 42;" in val.code

    # A bad name is an inline error, and the editor keeps the unsaved text.
    page.fill("input[name=name]", "not a name")
    page.keyboard.press("Control+End")
    page.click(".cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.type("\n// still here")
    page.click("button:has-text('Save')")
    page.wait_for_selector("text=Not saved.")
    assert "// still here" in page.evaluate("window.valEditor.getValue()")
    assert page.is_visible("#dirty-marker")

    # Fix the name, save, and find both versions in the history.
    page.fill("input[name=name]", "answer")
    page.click("button:has-text('Save')")
    page.wait_for_selector("text=Saved as version 2")
    assert page.url.endswith("/v/newcomer/answer")
    page.click("text=History")
    assert page.is_visible("a[href$='?v=0']") and page.is_visible("a[href$='?v=2']")


def test_the_editor_has_line_numbers_and_typescript_highlighting(page, live_server, django_user_model):
    from tests.factory import make_val

    alice = django_user_model.objects.create_user("alice", "alice@example.com", "pw")
    make_val(alice, name="typed", code="const n: number = 1;\nexport default () => <div>{n}</div>;\n")
    page.goto(live_server.url + "/v/alice/typed")
    page.wait_for_selector(".cm-editor")
    assert page.locator(".cm-lineNumbers .cm-gutterElement").count() >= 2
    # Keywords and JSX tags are coloured by the highlighter, not left as plain text.
    highlighted = page.locator(".cm-line span").count()
    assert highlighted >= 5
