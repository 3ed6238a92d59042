"""Email vals: mail arrives over SMTP or HTTP and runs the val it is addressed to."""

import asyncio
import smtplib
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings

from tests.factory import make_val
from vals.evaluations import runner
from vals.evaluations.models import Evaluation
from vals.inbound_email import InvalidEmail, parse_message, val_for_address
from vals.management.commands.runsmtp import EmailValHandler

pytestmark = pytest.mark.django_db(transaction=True)

LOGS_THE_SUBJECT = """\
export default async function (email) {
  console.log(`subject: ${email.subject}`);
  return { from: email.from, text: email.text, files: email.attachments.length };
}
"""

TOKEN = "test-inbound-token"


def a_message(to="alice.inbox@localhost", subject="Hello val"):
    message = EmailMessage()
    message["From"] = "Sender <sender@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Plain words")
    message.add_alternative("<p>Rich words</p>", subtype="html")
    message.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="data.bin")
    return message.as_bytes()


def test_a_message_is_parsed_into_an_email_object():
    email = parse_message(a_message())
    assert email["from"] == "Sender <sender@example.com>"
    assert email["to"] == ["alice.inbox@localhost"] and email["subject"] == "Hello val"
    assert email["text"].strip() == "Plain words" and "<p>Rich words</p>" in email["html"]
    assert email["attachments"][0]["$file"]["name"] == "data.bin"
    assert email["headers"]["Subject"] == "Hello val"


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff\xfe not mail at all", b"Subject: no sender\r\n\r\nbody"])
def test_malformed_mail_gets_a_clear_error(garbage):
    with pytest.raises(InvalidEmail):
        parse_message(garbage)


@override_settings(EMAIL_MAX_BYTES=100)
def test_mail_over_the_size_limit_is_refused():
    with pytest.raises(InvalidEmail, match="larger than"):
        parse_message(a_message())


def test_mail_with_headers_over_64_kb_is_refused_before_they_are_parsed():
    """Parsing headers grows faster than they do: a Subject of 24,000 encoded words
    (340 KB) held the SMTP server's event loop for 4.5 s."""
    words = "\r\n ".join("=?utf-8?q?w?=" for _ in range(24_000))
    raw = b"From: a@example.com\r\nTo: alice.inbox@localhost\r\nSubject: " + words.encode() + b"\r\n\r\nbody"
    with pytest.raises(InvalidEmail, match="headers are larger than 64 KB"):
        parse_message(raw)


def test_addresses_route_to_email_vals_only(alice):
    inbox = make_val(alice, name="inbox", type="email")
    make_val(alice, name="script", type="script")
    assert val_for_address("alice.inbox@localhost") == inbox
    assert val_for_address("ALICE.INBOX@LOCALHOST") == inbox
    assert val_for_address("alice.script@localhost") is None
    assert val_for_address("alice.inbox@elsewhere.com") is None
    assert val_for_address("nobody@localhost") is None


@override_settings(INBOUND_EMAIL_TOKEN=TOKEN)
async def test_mail_posted_over_http_runs_the_handler(alice):
    await sync_to_async(make_val)(alice, name="inbox", type="email", code=LOGS_THE_SUBJECT)
    client = AsyncClient()
    response = await client.post("/email/inbound", a_message(), content_type="message/rfc822", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202
    await runner.wait_for_all()
    evaluation = await Evaluation.objects.select_related("principal").aget(pk=response.json()["evaluations"][0])
    assert evaluation.trigger == "email" and evaluation.principal == alice and evaluation.status == "success"
    assert [line["message"] for line in evaluation.logs] == ["subject: Hello val"]
    assert evaluation.result["value"]["files"] == 1


@override_settings(INBOUND_EMAIL_TOKEN=TOKEN)
async def test_the_http_endpoint_refuses_bad_requests(alice):
    await sync_to_async(make_val)(alice, name="inbox", type="email", code=LOGS_THE_SUBJECT)
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.post("/email/inbound", a_message(), content_type="message/rfc822")).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/email/inbound", a_message(), content_type="message/rfc822", headers=wrong)).status_code == 401
    response = await client.post("/email/inbound", b"\x00garbage", content_type="message/rfc822", headers=auth)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_email"
    response = await client.post("/email/inbound", a_message(to="bob.nothing@localhost"), content_type="message/rfc822", headers=auth)
    assert response.status_code == 404
    assert not await Evaluation.objects.aexists()


async def test_mail_sent_over_smtp_runs_the_handler(alice):
    await sync_to_async(make_val)(alice, name="inbox", type="email", code=LOGS_THE_SUBJECT)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(EmailValHandler(), data_size_limit=10 * 1024 * 1024), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def send():
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.sendmail("sender@example.com", ["alice.inbox@localhost"], a_message(subject="Over SMTP"))
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("sender@example.com", ["nobody.here@localhost"], a_message())

    await loop.run_in_executor(None, send)
    server.close()
    await runner.wait_for_all()
    evaluation = await Evaluation.objects.aget()
    assert evaluation.trigger == "email" and evaluation.status == "success"
    assert [line["message"] for line in evaluation.logs] == ["subject: Over SMTP"]


def test_the_val_page_shows_the_address(anonymous_client, alice):
    make_val(alice, name="inbox", type="email")
    assert b"alice.inbox@localhost" in anonymous_client.get("/v/alice/inbox").content
