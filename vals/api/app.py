from typing import Annotated

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404
from ninja import NinjaAPI, Path, Query
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as SchemaValidationError
from ninja.responses import Status

from accounts.secrets.models import Secret
from vals.api.auth import READ, WRITE
from vals.api.errors import ERRORS, ApiError, Error, bad_request, not_found
from vals.api.schemas import (
    CodeIn,
    EvaluationOut,
    EvaluationPage,
    LikeOut,
    RunIn,
    SecretIn,
    SecretList,
    EvaluationStatus,
    Trigger,
    UserOut,
    ValIn,
    ValOut,
    ValPage,
    ValPatch,
    VersionOut,
    VersionPage,
    VersionSaved,
)
from vals.evaluations import runner
from vals.evaluations.models import Evaluation
from vals.models import Val, ValVersion

api = NinjaAPI(
    title="Val Town API",
    version="1",
    description="Vals, versions, evaluations and secrets. Authenticate with `Authorization: Bearer <token>` "
    "(create one at /settings/tokens).",
    auth=WRITE,  # each operation that only reads says so (vals/api/auth.py)
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)

MAX_PAGE_SIZE = 100
MAX_OFFSET = 1_000_000
# Ids beyond this are refused before they reach the database (SQLite integers are 64-bit).
MAX_ID = 2**53
PathId = Annotated[int, Path(ge=0, le=MAX_ID)]


# --- Errors: one shape everywhere ---------------------------------------------------


def error_response(request, status, kind, message, headers=None):
    response = api.create_response(request, {"error": {"type": kind, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(ApiError)
def on_api_error(request, exc):
    return error_response(request, exc.status, exc.kind, exc.message, exc.headers)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return error_response(request, 401, "unauthorized", "A valid token is required: Authorization: Bearer <token>.")


@api.exception_handler(SchemaValidationError)
def on_schema_error(request, exc):
    details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in exc.errors[:5])
    return error_response(request, 400, "bad_request", f"The request is not valid: {details}")


@api.exception_handler(ValidationError)
def on_model_error(request, exc):
    return error_response(request, 400, "bad_request", " ".join(exc.messages))


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return error_response(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def on_http_error(request, exc):
    return error_response(request, exc.status_code, "error", str(exc))


# --- Helpers ------------------------------------------------------------------------


def page(queryset, limit, offset, serialize):
    return {
        "count": queryset.count(),
        "limit": limit,
        "offset": offset,
        "items": [serialize(item) for item in queryset[offset : offset + limit]],
    }


def val_summary(val):
    return {
        "id": val.pk,
        "owner": val.owner.username,
        "name": val.name,
        "type": val.type,
        "privacy": val.privacy,
        "version": val.version,
        "like_count": val.like_count,
        "updated_at": val.updated_at,
    }


def val_out(val, viewer):
    # Lineage is shown only when the viewer may see the parent.
    parent_visible = val.forked_from is not None and val.forked_from.is_visible_to(viewer)
    return {
        **val_summary(val),
        "readme": val.readme,
        "code": val.code,
        "forked_from": val.forked_from_id if parent_visible else None,
        "forked_from_version": val.forked_from_version if parent_visible else None,
        "created_at": val.created_at,
        "url": settings.SITE_ROOT.rstrip("/") + val.get_absolute_url(),
        "raw_url": val.import_url,
    }


def evaluation_summary(evaluation):
    return {
        "id": evaluation.pk,
        "val_id": evaluation.val_id,
        "val_version": evaluation.val_version,
        "trigger": evaluation.trigger,
        "status": evaluation.status,
        "started_at": evaluation.started_at,
        "duration_ms": evaluation.duration_ms,
    }


def evaluation_out(evaluation):
    return {
        **evaluation_summary(evaluation),
        "args": evaluation.args,
        "logs": evaluation.logs,
        "result": evaluation.result,
        "error": evaluation.error,
        "kill_reason": evaluation.kill_reason,
    }


def visible_val(request, val_id):
    """A val the token's user may reach by its id; a private val of someone else, and an
    unlisted one (whose capability is its name: /v1/alias), are a plain 404."""
    val = Val.objects.select_related("owner", "forked_from").filter(pk=val_id).first()
    if val is None or not val.is_visible_by_id_to(request.user):
        raise not_found()
    return val


def own_val(request, val_id):
    val = visible_val(request, val_id)
    if not val.is_owned_by(request.user):
        raise ApiError(403, "forbidden", "Only the val's owner can change it.")
    return val


def pagination(limit, offset):
    return min(max(limit, 1), MAX_PAGE_SIZE), max(offset, 0)


# --- Me -----------------------------------------------------------------------------


@api.get("/me", response={200: UserOut, **ERRORS}, tags=["me"], auth=READ)
def me(request):
    user = request.user
    return {"id": user.pk, "username": user.username, "bio": user.bio, "url": settings.SITE_ROOT.rstrip("/") + user.get_absolute_url()}


# --- Vals ---------------------------------------------------------------------------


@api.get("/vals", response={200: ValPage, **ERRORS}, tags=["vals"], auth=READ)
def list_my_vals(request, limit: int = Query(50, ge=1, le=MAX_PAGE_SIZE), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Your vals, newest first."""
    limit, offset = pagination(limit, offset)
    vals = Val.objects.filter(owner=request.user).select_related("owner").order_by("-created_at", "-id")
    return page(vals, limit, offset, val_summary)


@api.post("/vals", response={201: ValOut, **ERRORS}, tags=["vals"])
def create_val(request, payload: ValIn):
    val = Val.create(
        owner=request.user, name=payload.name, code=payload.code, type=payload.type, privacy=payload.privacy, readme=payload.readme
    )
    return Status(201, val_out(val, request.user))


@api.get("/vals/{val_id}", response={200: ValOut, **ERRORS}, tags=["vals"], auth=READ)
def get_val(request, val_id: PathId):
    return val_out(visible_val(request, val_id), request.user)


@api.get("/alias/{username}/{name}", response={200: ValOut, **ERRORS}, tags=["vals"], auth=READ)
def get_val_by_name(request, username: str, name: str):
    val = Val.objects.named(username, name).select_related("owner", "forked_from").first()
    if val is None or not val.is_visible_to(request.user):
        raise not_found()
    return val_out(val, request.user)


@api.patch("/vals/{val_id}", response={200: ValOut, **ERRORS}, tags=["vals"])
def update_val(request, val_id: PathId, payload: ValPatch):
    """Rename, or set privacy, type or readme. Code changes go through POST /versions."""
    val = own_val(request, val_id)
    if payload.name is not None and payload.name != val.name:
        val.rename(payload.name)
    type_changed = payload.type is not None and payload.type != val.type
    for field in ("type", "privacy", "readme"):
        if getattr(payload, field) is not None:
            setattr(val, field, getattr(payload, field))
    val.save(update_fields=["type", "privacy", "readme", "updated_at"])
    if type_changed:
        val.type_changed()
    return val_out(val, request.user)


@api.delete("/vals/{val_id}", response={204: None, **ERRORS}, tags=["vals"])
def delete_val(request, val_id: PathId):
    own_val(request, val_id).delete()
    return Status(204, None)


@api.get("/vals/{val_id}/versions", response={200: VersionPage, **ERRORS}, tags=["versions"], auth=READ)
def list_versions(request, val_id: PathId, limit: int = Query(50, ge=1, le=MAX_PAGE_SIZE), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    limit, offset = pagination(limit, offset)
    val = visible_val(request, val_id)
    return page(val.versions.order_by("-number"), limit, offset, lambda v: {"number": v.number, "created_at": v.created_at})


@api.get("/vals/{val_id}/versions/{number}", response={200: VersionOut, **ERRORS}, tags=["versions"], auth=READ)
def get_version(request, val_id: PathId, number: PathId):
    val = visible_val(request, val_id)
    try:
        version = val.version_numbered(number)
    except ValVersion.DoesNotExist:
        raise not_found("No such version.") from None
    return {"number": version.number, "code": version.code, "created_at": version.created_at}


@api.post("/vals/{val_id}/versions", response={201: VersionSaved, 200: VersionSaved, **ERRORS}, tags=["versions"])
def save_code(request, val_id: PathId, payload: CodeIn):
    """Save new code: a new version, unless the code is unchanged."""
    val = own_val(request, val_id)
    version, created = val.save_version(payload.code)
    return Status((201 if created else 200), {"number": version.number, "created": created})


@api.post("/vals/{val_id}/fork", response={201: ValOut, **ERRORS}, tags=["vals"])
def fork_val(request, val_id: PathId):
    fork = visible_val(request, val_id).fork_for(request.user)
    return Status(201, val_out(fork, request.user))


@api.post("/vals/{val_id}/like", response={200: LikeOut, **ERRORS}, tags=["likes"])
def like_val(request, val_id: PathId):
    val = visible_val(request, val_id)
    val.like_by(request.user)
    return {"liked": True, "like_count": val.like_count}


@api.delete("/vals/{val_id}/like", response={200: LikeOut, **ERRORS}, tags=["likes"])
def unlike_val(request, val_id: PathId):
    val = visible_val(request, val_id)
    val.unlike_by(request.user)
    return {"liked": False, "like_count": val.like_count}


# --- Evaluations --------------------------------------------------------------------


def my_evaluations(request, val_id=None, status=None, trigger=None):
    evaluations = Evaluation.objects.made_as(request.user).newest().defer("logs", "result", "args", "error")
    if val_id is not None:
        evaluations = evaluations.filter(val_id=val_id)
    if status:
        evaluations = evaluations.filter(status=status)
    if trigger:
        evaluations = evaluations.filter(trigger=trigger)
    return evaluations


@api.get("/evaluations", response={200: EvaluationPage, **ERRORS}, tags=["evaluations"], auth=READ)
def list_evaluations(
    request,
    val_id: int | None = Query(None, ge=0, le=MAX_ID),
    status: EvaluationStatus | None = None,
    trigger: Trigger | None = None,
    limit: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
):
    """Every evaluation made as you, newest first."""
    limit, offset = pagination(limit, offset)
    return page(my_evaluations(request, val_id, status, trigger), limit, offset, evaluation_summary)


@api.get("/vals/{val_id}/evaluations", response={200: EvaluationPage, **ERRORS}, tags=["evaluations"], auth=READ)
def list_val_evaluations(
    request,
    val_id: PathId,
    status: EvaluationStatus | None = None,
    trigger: Trigger | None = None,
    limit: int = Query(50, ge=1, le=MAX_PAGE_SIZE),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
):
    """Your evaluations of one val, newest first."""
    limit, offset = pagination(limit, offset)
    visible_val(request, val_id)
    return page(my_evaluations(request, val_id, status, trigger), limit, offset, evaluation_summary)


@api.get("/evaluations/{evaluation_id}", response={200: EvaluationOut, **ERRORS}, tags=["evaluations"], auth=READ)
def get_evaluation(request, evaluation_id: PathId):
    evaluation = Evaluation.objects.filter(pk=evaluation_id, principal=request.user).first()
    if evaluation is None:
        raise not_found("No such evaluation.")
    return evaluation_out(evaluation)


@api.post("/vals/{val_id}/run", response={200: EvaluationOut, 202: EvaluationOut, **ERRORS}, tags=["evaluations"])
async def run_val(request, val_id: PathId, payload: RunIn, wait: bool = True):
    """Run a val as you, with your secrets. With wait=false, returns at once; follow its logs
    over the websocket /ws/evaluations/{id}."""
    val = await sync_to_async(visible_val)(request, val_id)
    try:
        evaluation = await runner.start(request.user, val, payload.args, trigger=Evaluation.Trigger.API)
    except runner.TooManyRuns as busy:
        raise ApiError(429, "too_many_runs", str(busy), {"Retry-After": "5"}) from None
    if not wait:
        return Status(202, evaluation_out(evaluation))
    return Status(200, evaluation_out(await runner.finished(evaluation)))


# --- Secrets ------------------------------------------------------------------------


@api.get("/secrets", response={200: SecretList, **ERRORS}, tags=["secrets"], auth=READ)
def list_secrets(request):
    """Names only: values are never returned."""
    return {"items": [{"name": s.name, "updated_at": s.updated_at} for s in request.user.secrets.only("name", "updated_at")]}


@api.put("/secrets/{name}", response={204: None, **ERRORS}, tags=["secrets"])
def set_secret(request, name: str, payload: SecretIn):
    Secret.put(request.user, name, payload.value)
    return Status(204, None)


@api.delete("/secrets/{name}", response={204: None, **ERRORS}, tags=["secrets"])
def delete_secret(request, name: str):
    deleted, _ = Secret.objects.filter(owner=request.user, name=name).delete()
    if not deleted:
        raise not_found("No such secret.")
    return Status(204, None)


__all__ = ["api", "Error", "bad_request"]


# --- Running code and vals over HTTP (vals/api/running.py) -----------------------------

from vals.api.running import router as running_router  # noqa: E402

api.add_router("", running_router)
