"""A private email val receives no mail: to anyone who mails it, it is a val that doesn't exist.

Mail carries no identity (a From header is whatever the sender typed), so every sender is
a stranger, the owner included, and an address is made of public names, so it is no
secret either. Privacy alone decides whether a val answers its address."""

import asyncio
import smtplib
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import SMTP
from django.db import connection
from django.test import AsyncClient, override_settings
from django.test.utils import CaptureQueriesContext

from tests.factory import make_val
from vals.evaluations import runner
from vals.evaluations.models import Evaluation
from vals.inbound_email import val_for_address
from vals.management.commands.runsmtp import EmailValHandler

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "test-inbound-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

RECORDS_THE_SUBJECT = """\
export default async function (email) {
  console.log(`got: ${email.subject}`);
}
"""


def a_message(to, subject="Hello val"):
    message = EmailMessage()
    message["From"] = "Stranger <stranger@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Are you there?")
    return message.as_bytes()


@pytest.fixture
def bobs_email_vals(bob):
    make_val(bob, name="secretinbox", type="email", privacy="private", code=RECORDS_THE_SUBJECT)
    make_val(bob, name="inbox", type="email", privacy="public", code=RECORDS_THE_SUBJECT)
    make_val(bob, name="quietinbox", type="email", privacy="unlisted", code=RECORDS_THE_SUBJECT)


class SmtpServer:
    """The SMTP server of `manage.py runsmtp`, on a free port, for one test."""

    async def __aenter__(self):
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(EmailValHandler()), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()
        await runner.wait_for_all()

    async def rcpt_replies(self, *addresses):
        """The server's (code, text) answer to RCPT TO for each address, in one session."""

        def talk():
            with smtplib.SMTP("127.0.0.1", self.port) as smtp:
                smtp.ehlo()
                replies = []
                for address in addresses:
                    smtp.rset()
                    smtp.mail("stranger@example.com")
                    replies.append(smtp.rcpt(address))
                return replies

        return await asyncio.get_running_loop().run_in_executor(None, talk)

    async def send(self, to, subject):
        def talk():
            with smtplib.SMTP("127.0.0.1", self.port) as smtp:
                smtp.sendmail("stranger@example.com", [to], a_message(to, subject))

        await asyncio.get_running_loop().run_in_executor(None, talk)


async def test_a_stranger_gets_the_same_smtp_refusal_from_a_private_email_val_as_from_a_missing_one(bobs_email_vals):
    async with SmtpServer() as smtp:
        private, missing = await smtp.rcpt_replies("bob.secretinbox@localhost", "bob.nosuchinbox@localhost")
    assert private[0] == 550
    assert private == missing
    assert not await Evaluation.objects.aexists()


async def test_mail_sent_to_a_private_email_val_over_smtp_is_refused(bobs_email_vals):
    def talk(port):
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.sendmail("stranger@example.com", ["bob.secretinbox@localhost"], a_message("bob.secretinbox@localhost"))
            return refused.value.recipients

    async with SmtpServer() as smtp:
        refusals = await asyncio.get_running_loop().run_in_executor(None, talk, smtp.port)
    assert refusals["bob.secretinbox@localhost"][0] == 550
    assert not await Evaluation.objects.aexists()


@override_settings(INBOUND_EMAIL_TOKEN=TOKEN)
async def test_a_private_email_val_answers_the_http_endpoint_byte_for_byte_like_a_missing_one(bobs_email_vals):
    client = AsyncClient()
    private = await client.post("/email/inbound", a_message("bob.secretinbox@localhost"), content_type="message/rfc822", headers=AUTH)
    missing = await client.post("/email/inbound", a_message("bob.nosuchinbox@localhost"), content_type="message/rfc822", headers=AUTH)
    assert private.status_code == 404
    assert (private.status_code, private.content) == (missing.status_code, missing.content)
    by_query = await client.post(
        "/email/inbound?to=bob.secretinbox@localhost", a_message("someone@example.com"), content_type="message/rfc822", headers=AUTH
    )
    assert (by_query.status_code, by_query.content) == (missing.status_code, missing.content)
    await runner.wait_for_all()
    assert not await Evaluation.objects.aexists()


@override_settings(INBOUND_EMAIL_TOKEN=TOKEN)
async def test_mail_for_a_public_and_a_private_val_runs_only_the_public_one(bobs_email_vals):
    both = "bob.inbox@localhost, bob.secretinbox@localhost"
    response = await AsyncClient().post("/email/inbound", a_message(both), content_type="message/rfc822", headers=AUTH)
    assert response.status_code == 202 and len(response.json()["evaluations"]) == 1
    await runner.wait_for_all()
    evaluation = await Evaluation.objects.select_related("val").aget()
    assert evaluation.val.name == "inbox"


async def test_the_owners_public_and_unlisted_email_vals_still_receive_mail(bobs_email_vals):
    async with SmtpServer() as smtp:
        public, unlisted = await smtp.rcpt_replies("bob.inbox@localhost", "bob.quietinbox@localhost")
        assert public[0] == unlisted[0] == 250
        await smtp.send("bob.inbox@localhost", "to the public one")
        await smtp.send("bob.quietinbox@localhost", "to the unlisted one")
    logs = {e.val.name: [line["message"] for line in e.logs] async for e in Evaluation.objects.select_related("val")}
    assert logs == {"inbox": ["got: to the public one"], "quietinbox": ["got: to the unlisted one"]}


def test_looking_up_a_private_address_costs_the_same_queries_as_a_missing_one(bobs_email_vals):
    with CaptureQueriesContext(connection) as private:
        assert val_for_address("bob.secretinbox@localhost") is None
    with CaptureQueriesContext(connection) as missing:
        assert val_for_address("bob.nosuchinbox@localhost") is None
    assert len(private.captured_queries) == len(missing.captured_queries) == 1


def test_making_an_email_val_private_stops_its_mail(bob):
    inbox = make_val(bob, name="inbox", type="email")
    assert val_for_address("bob.inbox@localhost") == inbox
    inbox.privacy = "private"
    inbox.save()
    assert val_for_address("bob.inbox@localhost") is None


def test_the_owner_of_a_private_email_val_is_told_it_receives_no_mail(bob, bob_client, alice_client):
    make_val(bob, name="secretinbox", type="email", privacy="private")
    make_val(bob, name="inbox", type="email")
    assert b"receives no mail while it is private" in bob_client.get("/v/bob/secretinbox").content
    assert b"receives no mail" not in bob_client.get("/v/bob/inbox").content
    assert alice_client.get("/v/bob/secretinbox").status_code == 404
