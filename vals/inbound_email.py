"""Inbound mail for email vals: parse a raw MIME message and hand it to the val it is for.

Each email val has the address <username>.<valname>@<EMAIL_DOMAIN>. Mail arrives
through `manage.py runsmtp` or the authenticated HTTP endpoint; both end up here.
The address is made of public names, so it is no secret: privacy decides. Public and
unlisted email vals receive mail; a private one receives none, and its address is
answered exactly like one that no val has (550 at RCPT, 404 over HTTP).
"""

import asyncio
import base64
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses

from asgiref.sync import sync_to_async
from django.conf import settings

from vals.capabilities import CHAIN_DEPTH_HEADER, ApiCalls
from vals.evaluations import runner, tenants
from vals.evaluations.models import Evaluation
from vals.models import Val


class InvalidEmail(ValueError):
    """A message that can't be read, with a reason fit to show the sender."""


class UnknownRecipient(InvalidEmail):
    """No email val receives mail at any of the message's addresses."""


# The email package's header parsing grows faster than the headers (a Subject of 24,000
# encoded words, 340 KB, took 4.5 s): real mail's headers are a few KB.
MAX_HEADER_BYTES = 64 * 1024


def parse_message(raw):
    """The Email object a val receives: from, to, cc, subject, text, html, headers, attachments."""
    if len(raw) > settings.EMAIL_MAX_BYTES:
        raise InvalidEmail(f"The message is larger than {settings.EMAIL_MAX_BYTES // (1024 * 1024)} MB.")
    header_end = min((at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0), default=len(raw))
    if header_end > MAX_HEADER_BYTES:
        raise InvalidEmail(f"The message's headers are larger than {MAX_HEADER_BYTES // 1024} KB.")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        sender = str(message.get("From", "")).strip()
        if not sender or message.defects and not message.keys():
            raise InvalidEmail("The message has no From header: is it a MIME message?")
        text_part = message.get_body(preferencelist=("plain",))
        html_part = message.get_body(preferencelist=("html",))
        attachments = []
        for part in message.iter_attachments():
            content = part.get_payload(decode=True) or b""
            attachments.append(
                {
                    "$file": {
                        "name": part.get_filename() or "attachment",
                        "type": part.get_content_type(),
                        "base64": base64.b64encode(content).decode("ascii"),
                    }
                }
            )
        return {
            "from": sender,
            "to": [address for _, address in getaddresses(message.get_all("To", []))],
            "cc": [address for _, address in getaddresses(message.get_all("Cc", []))],
            "subject": str(message.get("Subject", "")),
            "text": text_part.get_content() if text_part is not None else None,
            "html": html_part.get_content() if html_part is not None else None,
            "headers": {name: str(value) for name, value in message.items()},
            "attachments": attachments,
        }
    except InvalidEmail:
        raise
    except Exception as error:  # the email package raises many kinds on garbage
        raise InvalidEmail(f"The message could not be read as MIME: {error}") from None


def val_for_address(address):
    """The email val an address receives mail for, or None: a private val receives none,
    answered exactly like an address no val has."""
    local, _, domain = (address or "").strip().strip("<>").rpartition("@")
    if domain.lower() != settings.EMAIL_DOMAIN.lower() or "." not in local:
        return None
    username, name = local.rsplit(".", 1)
    return Val.objects.named(username, name).receiving_mail().select_related("owner").first()


def chain_depth(email):
    """How many runs in a row led to this mail, if a val sent it (CHAIN_DEPTH_HEADER):
    the email val's run then counts as one more, as an api() call does, and mail at the
    end of a chain as long as api() allows is refused. A sender outside can set the header
    too, which only gets their own mail refused sooner."""
    value = next((v for k, v in email["headers"].items() if k.lower() == CHAIN_DEPTH_HEADER.lower()), "0")
    depth = int(value) if value.strip().isdigit() and len(value) < 6 else 0
    deepest = ApiCalls.max_depth()
    if depth > deepest:
        raise InvalidEmail(
            f"This mail was sent by a val at the end of a chain of {depth} runs, each started by the one before: "
            f"at most {deepest} levels of vals starting vals."
        )
    return depth


async def deliver(raw, recipients=None):
    """Start the email val of each recipient with the parsed message. Returns the evaluations.

    Without recipients (an SMTP envelope), the To and Cc headers say who it is for.
    Raises InvalidEmail for a malformed message, UnknownRecipient when it is for no email val."""
    # In a thread: a large message takes a while to parse, and this runs on the SMTP
    # server's event loop (and the web server's), which serves everyone else meanwhile.
    email = await asyncio.to_thread(parse_message, raw)
    if not recipients:
        recipients = email["to"] + email["cc"]
    depth = chain_depth(email)
    evaluations = []
    for address in dict.fromkeys(recipients):
        val = await sync_to_async(val_for_address)(address)
        if val is not None:
            api_calls = ApiCalls(depth=depth, tenant=tenants.of_user(val.owner))
            evaluations.append(await runner.start(val.owner, val, [email], trigger=Evaluation.Trigger.EMAIL, api_calls=api_calls))
    if not evaluations:
        raise UnknownRecipient("No email val receives mail at that address.")
    return evaluations
