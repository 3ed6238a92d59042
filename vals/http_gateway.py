"""Serving HTTP vals on their own origins: http://<username>-<valname>.web.<base>/...

This is plain ASGI, routed before Django, so requests skip the middleware stack and go
straight to the runtime's warm processes. A val's page never shares the app's origin,
so its HTML and JavaScript can't read the app's session cookie or CSRF token.
"""

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.conf import settings

import runtime
from accounts.secrets.models import Redactor, Secret
from vals.capabilities import ApiCalls, host_call_handler
from vals.imports import point_imports_at_module_host
from vals.module_host import needs_library_worker, principal_for_evaluation
from vals.evaluations import tenants
from vals.evaluations.batch import writer
from vals.evaluations.models import RUNNER, Evaluation
from vals.evaluations.runner import evaluation_limits
from vals.evaluations.storable import RecordedLogs, recorded_error
from vals.models import Val

# The app's own cookies are host-only, so browsers never send them here. They are
# stripped anyway, should a deployment ever widen their domain.
APP_COOKIES = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}


def val_host_suffix():
    return "." + settings.HTTP_VAL_DOMAIN.split(":")[0].lower()


def is_val_host(host):
    return val_label(host) is not None


def _host(scope):
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1")
    return ""


def val_label(host):
    """The "<username>-<valname>" part of a val's hostname; None for any other host."""
    name = host.split(":")[0].lower()
    suffix = val_host_suffix()
    return name[: -len(suffix)] if name.endswith(suffix) else None


def secrets_digest(env):
    return hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()


class ServedVal:
    """An HTTP val as the gateway serves it: what one lookup finds, shared by the requests
    that arrive while it is fresh."""

    def __init__(self, val, env):
        self.val = val
        self.owner = val.owner
        self.redactor = Redactor(env.values())
        self.endpoint = runtime.http_endpoint(
            # Which warm process serves it: one started with these very secrets, so that a
            # secret deleted or rotated is gone from the next lookup on (a process with the
            # old ones gets no more requests, and is retired when idle).
            ("val", val.pk, val.version, val.owner_id, secrets_digest(env)),
            code=point_imports_at_module_host(val.code),
            env=env,
            import_grant=principal_for_evaluation(self.owner),
            library_worker=needs_library_worker(val.code, val.owner_id),
            limits=evaluation_limits(),
            max_body_bytes=settings.HTTP_VAL_MAX_BODY_BYTES,
            tenant=val.owner_id,  # waiting requests take turns by user (runtime/warm.py)
        )
        # What every request's evaluation record shares (see EvaluationWriter).
        self.record = {
            "val_id": val.pk,
            "val_version": val.version,
            "principal_id": val.owner_id,
            "trigger": Evaluation.Trigger.HTTP.value,
            "runner": RUNNER,
        }


def _find_http_val(label):
    username, _, name = label.rpartition("-")
    if not username or not name:
        return None
    val = Val.objects.named(username, name).select_related("owner").first()
    # A private val is never served: a visitor to its origin carries no identity to show
    # it is the owner, and a different answer would tell strangers that it exists.
    if val is None or val.privacy == Val.Privacy.PRIVATE:
        return None
    env = Secret.objects.filter(owner_id=val.owner_id).environment()
    return ServedVal(val, env)


# Lookups in flight, by event loop and label: concurrent requests for one val share one.
_lookups = {}


async def _look_up(label):
    """What _find_http_val finds, for a request arriving now. Requests that arrive while a
    lookup for the same label is in flight share its answer (as fresh as their own would
    be), so a flood of requests to one val costs the database one query at a time, and
    other users' requests don't queue behind a thousand of them."""
    loop = asyncio.get_running_loop()
    key = (loop, label)
    pending = _lookups.get(key)
    if pending is None:
        pending = asyncio.ensure_future(sync_to_async(_find_http_val)(label))
        _lookups[key] = pending

        def forget(_):
            # Kept HTTP_VAL_LOOKUP_SECONDS after it finished: a save, a privacy change or a
            # new secret reaches the endpoint within that long, and a busy val costs the
            # database one lookup per interval instead of one per request.
            loop.call_later(settings.HTTP_VAL_LOOKUP_SECONDS, _lookups.pop, key, None)

        pending.add_done_callback(forget)
    if pending.done():
        return pending.result()
    return await asyncio.shield(pending)


def without_app_cookies(headers):
    """headers without the app's cookies (the same list when it has no Cookie header)."""
    for name, _ in headers:
        if name == b"cookie":
            break
    else:
        return headers
    kept = []
    for name, value in headers:
        if name == b"cookie":
            pairs = [p for p in value.decode("latin-1").split(";") if p.split("=", 1)[0].strip() not in APP_COOKIES]
            if not pairs:
                continue
            value = ";".join(pairs).strip().encode("latin-1")
        kept.append((name, value))
    return kept


async def plain_response(send, status, text):
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve(scope, receive, send, label=None):
    if label is None:
        label = val_label(_host(scope))
    served = await _look_up(label)
    if served is None:
        return await plain_response(send, 404, f"No val is served at {label}.\n")
    val = served.val
    if val.type != Val.Type.HTTP:
        return await plain_response(
            send, 400, f"@{val.owner.username}/{val.name} is a {val.get_type_display().lower()} val, not an HTTP val.\n"
        )
    logs = RecordedLogs(served.redactor)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    headers = scope.get("headers", [])
    kept_headers = without_app_cookies(headers)
    if kept_headers is not headers:
        scope = {**scope, "headers": kept_headers}
    # The val's api() calls are charged to the visitor who made the request.
    api_calls = ApiCalls(tenant=tenants.of_address((scope.get("client") or ("",))[0]))
    outcome = await served.endpoint.serve(
        scope, receive, send, on_log=logs.add, on_call=host_call_handler(served.owner, api_calls)
    )
    query = scope.get("query_string")
    writer.add(
        {
            **served.record,
            "status": outcome.status,
            "started_at": started_at,
            "finished_at": datetime.now(UTC),
            "duration_ms": outcome.duration_ms or int((time.monotonic() - clock) * 1000),
            "logs": logs.lines,
            "error": recorded_error(outcome.error, logs.redactor),
            "kill_reason": outcome.kill_reason or "",
            "http_method": scope.get("method", "")[:10],  # the column's length: a custom method may be longer
            "http_path": (scope.get("path", "") + ("?" + query.decode("latin-1") if query else ""))[:2000],
            "http_status": outcome.http_status,
        }
    )


class HttpValRouter:
    """Sends requests for val hosts to the gateway, and everything else to the app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        label = val_label(_host(scope)) if scope["type"] in ("http", "websocket") else None
        if label is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 4404})
        return await serve(scope, receive, send, label)
