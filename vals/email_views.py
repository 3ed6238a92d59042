"""The authenticated HTTP endpoint for inbound mail: POST a raw MIME message."""

import hmac

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from vals.inbound_email import InvalidEmail, UnknownRecipient, deliver


def _error(status, kind, message):
    return JsonResponse({"error": {"type": kind, "message": message}}, status=status)


def _authorized(request):
    expected = settings.INBOUND_EMAIL_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@csrf_exempt
@require_POST
async def inbound_email(request):
    """Deliver a raw MIME message to the email vals it is addressed to (?to= overrides the headers)."""
    if not _authorized(request):
        return _error(401, "unauthorized", "A valid Authorization: Bearer token is required.")
    if int(request.headers.get("Content-Length") or 0) > settings.EMAIL_MAX_BYTES:
        return _error(413, "too_large", f"The message is larger than {settings.EMAIL_MAX_BYTES // (1024 * 1024)} MB.")
    try:
        evaluations = await deliver(request.body, request.GET.getlist("to"))
    except UnknownRecipient as error:
        return _error(404, "unknown_recipient", str(error))
    except InvalidEmail as error:
        return _error(400, "invalid_email", str(error))
    return JsonResponse({"evaluations": [evaluation.pk for evaluation in evaluations]}, status=202)
