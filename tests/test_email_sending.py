"""Vals send email through the platform's /std/email module, always to whoever they run as."""

import httpx
import pytest
from django.core import mail
from django.test import override_settings

from accounts.models import ApiToken
from tests.factory import make_user, make_val
from tests.live import LiveServer
from vals.capabilities import CapabilityError, send_email


def test_mail_goes_to_the_principal_whatever_the_val_asks(alice):
    result = send_email(alice, {"subject": "Hello", "text": "Body", "to": "someone@else.example"})
    assert result == {"sent": True, "to": "alice@example.com"}
    assert mail.outbox[0].to == ["alice@example.com"] and mail.outbox[0].subject == "Hello"


@pytest.mark.parametrize("payload", [None, "text", {}, {"subject": ""}, {"subject": "x" * 301}, {"subject": "ok", "text": 5}])
def test_malformed_messages_are_refused_clearly(alice, payload):
    with pytest.raises(CapabilityError):
        send_email(alice, payload)
    assert mail.outbox == []


@override_settings(EMAIL_SENDS_PER_HOUR=2)
def test_sending_is_rate_limited_per_user(alice, bob):
    from django.core.cache import cache

    cache.clear()
    send_email(alice, {"subject": "1"})
    send_email(alice, {"subject": "2"})
    with pytest.raises(CapabilityError, match="2 messages an hour"):
        send_email(alice, {"subject": "3"})
    send_email(bob, {"subject": "bob is not limited by alice"})


def test_the_std_module_is_served_as_typescript(anonymous_client):
    response = anonymous_client.get("/std/email.ts")
    assert response["Content-Type"] == "application/typescript; charset=utf-8"
    assert b"export async function email" in response.content
    assert anonymous_client.get("/std/nothing.ts").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_val_run_by_bob_emails_bob_not_its_author(tmp_path):
    alice, bob = make_user("alice"), make_user("bob")
    server = LiveServer({"TEST_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(tmp_path)})
    try:
        code = f"""import {{ email }} from "{server.url}/std/email.ts";
export default async () => await email({{ subject: "Report from a val", text: "All good." }});
"""
        val = make_val(alice, name="mailer", code=code)
        _, raw = ApiToken.issue(bob, "t", "write")
        response = httpx.post(f"{server.url}/v1/vals/{val.pk}/run", json={"args": []}, headers={"Authorization": f"Bearer {raw}"}, timeout=60)
        body = response.json()
        assert body["status"] == "success", (body, server.output())
        # Alice's code runs for bob in Restricted Library Mode: the mail reaches bob, and the
        # reply tells her code nothing about whom it reached.
        assert body["result"]["value"] == {"sent": True}
    finally:
        server.stop()
    sent = "".join(path.read_text() for path in tmp_path.iterdir())
    assert "Subject: Report from a val" in sent and "To: bob@example.com" in sent
