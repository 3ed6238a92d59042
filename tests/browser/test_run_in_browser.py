"""The core loop in a real browser, against a real daphne server and the real Deno pool:
sign up, create a val, save, Run, watch the logs stream in, see the result, find the run
in the tracing log."""

import pytest


pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOGGING_VAL = """\
export default async function (name = "world") {
  for (let i = 1; i <= 15; i++) {
    console.log(`tick ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { greeting: `hello ${name}` };
}
"""


def test_the_whole_loop_works_in_a_browser(page, live_daphne):
    base = live_daphne.url
    page.goto(base + "/accounts/signup/")
    page.fill("input[name=username]", "runner")
    page.fill("input[name=email]", "runner@example.com")
    page.fill("input[name=password1]", "a-long-unique-passphrase-42")
    page.fill("input[name=password2]", "a-long-unique-passphrase-42")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    page.click("text=+ New val")
    page.wait_for_selector(".cm-editor")
    page.evaluate("code => window.valEditor.setValue(code)", LOGGING_VAL)
    page.keyboard.press("Control+s")
    page.wait_for_selector("text=Saved as version 1")

    page.fill("input[name=args]", '["browser"]')
    page.click("button:has-text('Run')")

    # Lines arrive while the val is still running, not all at the end.
    page.wait_for_selector(".log-line >> text=tick 3")
    assert page.locator(".log-line").count() < 15
    assert page.locator(".spinner").count() == 1

    page.wait_for_selector("text=✅ Success", timeout=20_000)
    assert page.locator(".log-line").count() == 15
    assert "hello browser" in page.inner_text(".result")

    page.goto(base + "/settings/evaluations")
    assert page.locator("table.evaluations tbody tr").count() == 1
    assert "✅" in page.inner_text("table.evaluations")
