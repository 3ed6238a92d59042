"""What a running val may ask the host for, through the runtime's host calls.

Every call is authorised here from the evaluation's principal: nothing the val says
about who it is, or whom it writes to, is trusted.

A call whose name starts with "library:" was made by another user's code, running in
Restricted Library Mode's Worker inside the evaluation (the harness puts the prefix on
everything the Worker asks for; the val's own code can add it too, and so only give up
authority). Such code carries no one's authority: its api() calls are made as an
anonymous caller's (public vals only), its email() goes to the evaluation's principal
as a val's email does, counted apart and answered without the address, and everything
else is refused."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.mail import EmailMultiAlternatives

import runtime
from vals import blob, ratelimit

MAX_SUBJECT = 300
MAX_BODY = 200_000


class CapabilityError(Exception):
    """Refused, with a message the val sees as its Error."""


LIBRARY_PREFIX = "library:"
# On mail a val sends: how many runs in a row led to it. Mail is another way for a run to
# start one (a user whose address is an email val's), so the inbound side counts it as
# api() counts nesting (vals/inbound_email.py).
CHAIN_DEPTH_HEADER = "X-Valtown-Chain-Depth"


def _check_email_rate(bucket):
    count, _ = ratelimit.hit(bucket, 3600)
    if count > settings.EMAIL_SENDS_PER_HOUR:
        raise CapabilityError(f"email() is limited to {settings.EMAIL_SENDS_PER_HOUR} messages an hour.")


def send_email(principal, payload, depth=0):
    """The val's own email(): to its principal, who may know their own address. `depth`
    is the sending evaluation's place in its chain of runs (ApiCalls.depth)."""
    _send_email(principal, payload, f"email:{principal.pk}", depth)
    return {"sent": True, "to": principal.email}


def send_email_for_a_library(principal, payload, depth=0):
    """Another user's library's email(): to the evaluation's principal too, but in a
    bucket of its own, so a library can't spend its importer's allowance, and with a
    reply that tells the library nothing about whom it reached."""
    _send_email(principal, payload, f"email-from-libraries:{principal.pk}", depth)
    return {"sent": True}


def _send_email(principal, payload, bucket, depth):
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
    _check_email_rate(bucket)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=text or "",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[principal.email],
        headers={"Auto-Submitted": "auto-generated", CHAIN_DEPTH_HEADER: str(depth + 1)},
    )
    if html is not None:
        message.attach_alternative(html, "text/html")
    message.send()


HANDLERS = {"email.send": send_email}
HANDLERS.update(blob.HANDLERS)  # blob.get, blob.set, blob.delete, blob.list


class ApiCalls:
    """The api() allowance of one tree of evaluations: how deep this evaluation is (the
    top one is 0), how many calls the whole tree may still make, and whom the tree is
    charged to (its top-level caller's tenant, vals/evaluations/tenants.py)."""

    def __init__(self, depth=0, budget=None, tenant=""):
        self.depth = depth
        self.budget = budget  # {"left": calls}, shared by the tree; made at its first call
        self.tenant = tenant

    @staticmethod
    def max_depth():
        """How deep calls may nest: API_MAX_DEPTH, and no deeper than the top-level caller's
        share of the runtime can hold, as every run in a chain holds a process while it
        waits for the next (a deeper chain would wait on itself until it timed out)."""
        return max(0, min(settings.API_MAX_DEPTH, runtime.processes_per_tenant() - 1))

    def take(self):
        if self.budget is None:
            self.budget = {"left": settings.API_MAX_CALLS_PER_EVALUATION}
        deepest = self.max_depth()
        if self.depth >= deepest:
            raise CapabilityError(f"api() calls nest too deeply: at most {deepest} levels of vals calling vals.")
        if self.budget["left"] <= 0:
            raise CapabilityError(
                f"too many api() calls: at most {settings.API_MAX_CALLS_PER_EVALUATION} for one evaluation, "
                "counting the calls of the vals it calls."
            )
        self.budget["left"] -= 1
        return ApiCalls(self.depth + 1, self.budget, self.tenant)


async def call_val_as_api(principal, payload, api_calls):
    """api("bob.lib", ...args): runs bob's val as bob, as its own evaluation in bob's
    tracing log, and returns its JSON result. Private vals only for their owner."""
    from vals.evaluations import runner
    from vals.evaluations.models import Evaluation
    from vals.models import Val

    if not isinstance(payload, dict) or not isinstance(payload.get("val"), str):
        raise CapabilityError('api() takes a val\'s name, e.g. api("bob.lib", ...args).')
    spelled = payload["val"]
    args = payload.get("args", [])
    if not isinstance(args, list):
        raise CapabilityError("api()'s arguments must be a list of JSON values.")
    val = await sync_to_async(Val.objects.callable_as_api)(spelled, principal)
    if val is None:
        raise CapabilityError(f"api(): there is no val called {spelled!r} that you can call.")
    allowance = api_calls.take()
    evaluation = await runner.start(
        val.owner, val, args, trigger=Evaluation.Trigger.API, api_calls=allowance, limit_running=False
    )
    evaluation = await runner.finished(evaluation)
    if evaluation.status != Evaluation.Status.SUCCESS:
        error = evaluation.error or {}
        detail = f"{error.get('name', 'Error')}: {error.get('message', '')}" if error else evaluation.status
        raise CapabilityError(f"api({spelled!r}) failed ({evaluation.status}): {detail}")
    result = evaluation.result or {}
    return result.get("value") if result.get("type") == "json" else None


def host_call_handler(principal, api_calls):
    """An on_call for the runtime, bound to the evaluation's principal (None for an
    anonymous /v1/eval, which may only call public vals' APIs) and its api() allowance."""

    async def on_call(name, payload):
        if name.startswith(LIBRARY_PREFIX):
            return await _library_call(principal, name[len(LIBRARY_PREFIX) :], payload, api_calls)
        if name == "api.call":
            return await call_val_as_api(principal, payload, api_calls)
        if name == "email.send" and principal is not None:
            return await sync_to_async(send_email)(principal, payload, api_calls.depth)
        handler = HANDLERS.get(name)
        if handler is None:
            raise CapabilityError(f"There is no host capability called {name!r}.")
        if principal is None:
            raise CapabilityError(f"{name.split('.')[0]} needs a signed-in user: this evaluation runs without one.")
        return await sync_to_async(handler)(principal, payload)

    return on_call


async def _library_call(principal, name, payload, api_calls):
    """A host call of another user's code (Restricted Library Mode), as nobody."""
    if name == "api.call":
        return await call_val_as_api(None, payload, api_calls)
    if name == "email.send" and principal is not None:
        return await sync_to_async(send_email_for_a_library)(principal, payload, api_calls.depth)
    what = name.split(".")[0]
    if name not in HANDLERS:
        raise CapabilityError(f"There is no host capability called {name!r}.")
    raise CapabilityError(
        f"{what} is not available to another user's val imported by yours (Restricted Library Mode): "
        f"call it as an API with api() to use its owner's {what}"
        if what != "email"
        else "email needs a signed-in user: this evaluation runs without one."
    )
