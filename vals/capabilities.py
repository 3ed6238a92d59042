"""What a running val may ask the host for, through the runtime's host calls.

Every call is authorised here from the evaluation's principal: nothing the val says
about who it is, or whom it writes to, is trusted."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.mail import send_mail

from vals import ratelimit

MAX_SUBJECT = 300
MAX_BODY = 200_000


class CapabilityError(Exception):
    """Refused, with a message the val sees as its Error."""


def _check_email_rate(principal):
    count, _ = ratelimit.hit(f"email:{principal.pk}", 3600)
    if count > settings.EMAIL_SENDS_PER_HOUR:
        raise CapabilityError(f"email() is limited to {settings.EMAIL_SENDS_PER_HOUR} messages an hour.")


def send_email(principal, payload):
    if not isinstance(payload, dict):
        raise CapabilityError("email() takes an object: { subject, text, html }.")
    subject, text, html = payload.get("subject"), payload.get("text"), payload.get("html")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
        raise CapabilityError(f"email() needs a subject of at most {MAX_SUBJECT} characters.")
    for name, value in (("text", text), ("html", html)):
        if value is not None and (not isinstance(value, str) or len(value) > MAX_BODY):
            raise CapabilityError(f"email()'s {name} must be a string of at most {MAX_BODY:,} characters.")
    if not principal.email:
        raise CapabilityError("You have no email address to send to.")
    _check_email_rate(principal)
    send_mail(
        subject=" ".join(subject.split()),
        message=text or "",
        html_message=html,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[principal.email],
    )
    return {"sent": True, "to": principal.email}


HANDLERS = {"email.send": send_email}


def host_call_handler(principal):
    """An on_call for the runtime, bound to the evaluation's principal."""

    async def on_call(name, payload):
        handler = HANDLERS.get(name)
        if handler is None:
            raise CapabilityError(f"There is no host capability called {name!r}.")
        return await sync_to_async(handler)(principal, payload)

    return on_call
