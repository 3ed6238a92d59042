"""Running code and vals over HTTP: /v1/eval, /v1/run/<user>.<val> and /v1/express/....

A token is optional here. With one, /v1/eval runs as its user, with their secrets, so it
needs a read-write token (running code is a write, GET or not); without, it runs with
no secrets, no email or blob, and a stricter rate limit. /v1/run and /v1/express run a
val in API mode: as its author, whoever calls; a token there lets its user run their own
private vals, and so needs write access too.
"""

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from ninja import Router, Schema
from ninja.responses import Status

import runtime
from accounts.models import ApiToken
from vals.api.auth import TokenAuth, check_rate, client_ip
from vals.api.errors import ERRORS, ApiError, Error, bad_request, not_found
from vals.evaluations import runner, tenants
from vals.evaluations.models import Evaluation
from vals.evaluations.storable import recorded_error, storable
from vals.models import Val

router = Router(tags=["running"])

MAX_ARGS = 100


class OptionalToken(TokenAuth):
    """A valid bearer token with `access`, or none at all (anonymous). A wrong token is
    still a 401, and a read-only one a 403 where code runs."""

    ANONYMOUS = "anonymous"

    def __call__(self, request):
        if not request.headers.get("Authorization"):
            check_rate(f"ip:{client_ip(request)}", settings.API_RATE_LIMIT_PER_IP)
            return self.ANONYMOUS
        return super().__call__(request)


# A run acts with its caller's secrets, blobs, email and api(): a write.
RUNS_CODE = OptionalToken(ApiToken.Scope.WRITE)


def caller(request):
    """The token's user, or None for an anonymous caller."""
    return None if request.auth == OptionalToken.ANONYMOUS else request.auth.user


class EvalIn(Schema):
    code: str
    args: list[Any] = []


class EvalOut(Schema):
    result: Any = None
    logs: list[dict[str, Any]]
    duration_ms: int | None = None


class EvalErrorDetail(Schema):
    type: str
    message: str
    stack: str | None = None


class EvalError(Schema):
    error: EvalErrorDetail
    logs: list[dict[str, Any]] = []


EVAL_ERRORS = {**ERRORS, 400: EvalError, 408: Error, 413: Error, 502: Error, 503: Error, 504: EvalError}


def log_lines(result, redactor):
    return [{"level": line.level, "message": redactor.text(line.message), "ts": line.timestamp_ms} for line in result.logs]


def outcome_response(result, redactor):
    """The JSON /v1/eval answers with: the value, or the error with the right status."""
    logs = log_lines(result, redactor)
    if result.status == "success":
        value = redactor.value(storable(result.value_record()))
        return Status(200, {"result": value.get("value"), "logs": logs, "duration_ms": result.duration_ms})
    error = recorded_error(result.error, redactor) or {}
    if result.status == "timeout":
        return Status(504, {"error": {"type": "timeout", "message": error.get("message") or "The code ran too long."}, "logs": logs})
    # The submitted code threw, or was killed (memory): the request's fault, so a 4xx.
    kind = "val_error" if result.status == "error" else result.status
    return Status(400, {
        "error": {"type": kind, "message": error.get("message") or result.kill_reason or "The evaluation failed.", "stack": error.get("stack")},
        "logs": logs,
    })


async def evaluate(request, code, args):
    principal = caller(request)
    if principal is None:
        await sync_to_async(check_rate)(f"eval-anonymous:{client_ip(request)}", settings.ANONYMOUS_EVAL_RATE_LIMIT_PER_IP)
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise bad_request(f"args must be a JSON array of at most {MAX_ARGS} values.")
    if not code.strip():
        raise bad_request("There is no code to evaluate.")
    if len(code.encode()) > settings.VAL_MAX_CODE_BYTES:
        raise ApiError(413, "too_large", f"The code is over {settings.VAL_MAX_CODE_BYTES:,} bytes.")
    try:
        result, redactor = await runner.evaluate_code(principal, code, args, tenants.of_caller(principal, client_ip(request)))
    except runtime.RuntimeBusy as busy:
        raise ApiError(503, "busy", str(busy), {"Retry-After": "1"}) from None
    return outcome_response(result, redactor)


@router.get("/eval/{expression}", response={200: EvalOut, **EVAL_ERRORS}, auth=RUNS_CODE)
async def eval_expression(request, expression: str):
    """Evaluate a URL-encoded expression (or module) and return its value and logs."""
    return await evaluate(request, expression, [])


@router.post("/eval", response={200: EvalOut, **EVAL_ERRORS}, auth=RUNS_CODE)
async def eval_code(request, payload: EvalIn):
    """Evaluate code: an expression, or a module whose default export is called with args."""
    return await evaluate(request, payload.code, payload.args)


# --- Vals in API mode ---------------------------------------------------------------


def callable_val(request, spelled):
    """The val named "user.val" (or "@user/val") that the caller may run; a private val of
    someone else is the same 404 as one that doesn't exist."""
    val = Val.objects.callable_as_api(spelled, caller(request))
    if val is None:
        raise not_found()
    return val


def parse_args(text):
    try:
        args = json.loads(text)
    except json.JSONDecodeError:
        raise bad_request("args must be a JSON array, e.g. ?args=[1,%22two%22].") from None
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise bad_request(f"args must be a JSON array of at most {MAX_ARGS} values.")
    return args


async def run_as_author(request, spelled, args):
    val = await sync_to_async(callable_val)(request, spelled)
    try:
        # Charged to whoever calls, not to the val's author it runs as.
        evaluation = await runner.start(
            val.owner, val, args, trigger=Evaluation.Trigger.API, tenant=tenants.of_caller(caller(request), client_ip(request))
        )
    except runner.TooManyRuns as busy:
        raise ApiError(429, "too_many_runs", str(busy), {"Retry-After": "5"}) from None
    evaluation = await runner.finished(evaluation)
    if evaluation.status == Evaluation.Status.SUCCESS:
        result = evaluation.result or {}
        return JsonResponse(result.get("value") if result.get("type") == "json" else None, safe=False)
    error = evaluation.error or {}
    if evaluation.status == Evaluation.Status.TIMEOUT:
        status, kind = 504, "timeout"
    else:
        # The val, not the caller, failed: as a gateway whose upstream failed.
        status, kind = 502, "val_error"
    # The stack names the author's modules, private ones included, line by line: only the
    # author sees it (in their tracing log, and here).
    stack = error.get("stack") if caller(request) is not None and caller(request).pk == val.owner_id else None
    return JsonResponse(
        {"error": {"type": kind, "message": error.get("message") or evaluation.kill_reason or evaluation.status, "stack": stack}},
        status=status,
    )


@router.get("/run/{spelled}", response={200: Any, **EVAL_ERRORS}, auth=RUNS_CODE)
async def run_get(request, spelled: str, args: str = "[]"):
    """Run a val as its author, with ?args=<JSON array>; the response is its JSON return value."""
    return await run_as_author(request, spelled, parse_args(args))


@router.post("/run/{spelled}", response={200: Any, **EVAL_ERRORS}, auth=RUNS_CODE)
async def run_post(request, spelled: str):
    """Run a val as its author, with a JSON array of arguments as the body."""
    return await run_as_author(request, spelled, parse_args(request.body.decode("utf-8", "replace") or "[]"))


@router.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/express/{spelled}/{path:path}", response={307: None, **ERRORS}, auth=OptionalToken(ApiToken.Scope.READ))
def express(request, spelled: str, path: str):
    """An HTTP val's handler, in API mode: a redirect to the val's own origin, so that its
    response never runs as this site's origin. 307 keeps the method and body."""
    val = callable_val(request, spelled)
    if val.type != Val.Type.HTTP:
        raise ApiError(400, "not_http_val", f"@{val.owner.username}/{val.name} is a {val.type} val, not an HTTP val.")
    query = request.META.get("QUERY_STRING", "")
    return HttpResponseRedirect(val.endpoint_url + path + (f"?{query}" if query else ""), status=307)
