"""Serving HTTP vals on their own origins: http://<username>-<valname>.web.<base>/...

This is plain ASGI, routed before Django, so requests skip the middleware stack and go
straight to the runtime's warm processes. A val's page never shares the app's origin,
so its HTML and JavaScript can't read the app's session cookie or CSRF token.
"""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

import runtime
from accounts.secrets.models import Redactor, Secret
from vals.capabilities import host_call_handler
from vals.imports import point_imports_at_module_host
from vals.module_host import needs_library_worker
from vals.evaluations.batch import writer
from vals.evaluations.models import RUNNER, Evaluation
from vals.evaluations.storable import RecordedLogs, recorded_error
from vals.models import Val

# The app's own cookies are host-only, so browsers never send them here. They are
# stripped anyway, should a deployment ever widen their domain.
APP_COOKIES = {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}


def val_host_suffix():
    return "." + settings.HTTP_VAL_DOMAIN.split(":")[0].lower()


def is_val_host(host):
    return host.split(":")[0].lower().endswith(val_host_suffix())


def _host(scope):
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1")
    return ""


def val_label(host):
    """The "<username>-<valname>" part of a val's hostname."""
    return host.split(":")[0].lower()[: -len(val_host_suffix())]


def _find_http_val(label):
    username, _, name = label.rpartition("-")
    if not username or not name:
        return None, None
    val = Val.objects.named(username, name).select_related("owner").first()
    # A private val is never served: a visitor to its origin carries no identity to show
    # it is the owner, and a different answer would tell strangers that it exists.
    if val is None or val.privacy == Val.Privacy.PRIVATE:
        return None, None
    code = val.versions.get(number=val.version).code
    env = Secret.objects.filter(owner_id=val.owner_id).environment()
    # Imports are prepared here, once per lookup, not on every request.
    library_worker = needs_library_worker(code, val.owner_id)
    return val, (point_imports_at_module_host(code), env, library_worker)


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
    return await asyncio.shield(pending)


def without_app_cookies(headers):
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


async def serve(scope, receive, send):
    label = val_label(_host(scope))
    val, found = await _look_up(label)
    if val is None:
        return await plain_response(send, 404, f"No val is served at {label}.\n")
    if val.type != Val.Type.HTTP:
        return await plain_response(
            send, 400, f"@{val.owner.username}/{val.name} is a {val.get_type_display().lower()} val, not an HTTP val.\n"
        )
    code, env, library_worker = found
    logs = RecordedLogs(Redactor(env.values()))
    started_at = timezone.now()
    clock = time.monotonic()
    scope = {**scope, "headers": without_app_cookies(scope.get("headers", []))}
    outcome = await runtime.serve_http(
        ("val", val.pk, val.version, val.owner_id),
        code=code,
        import_grant={"principal_id": val.owner_id},
        library_worker=library_worker,
        env=env,
        scope=scope,
        receive=receive,
        send=send,
        limits=runtime.Limits(timeout_seconds=settings.EVALUATION_TIMEOUT_SECONDS),
        max_body_bytes=settings.HTTP_VAL_MAX_BODY_BYTES,
        on_call=host_call_handler(val.owner),
        on_log=logs.add,
        tenant=val.owner_id,  # waiting requests take turns by user (runtime/warm.py)
    )
    writer.add(
        Evaluation(
            val=val,
            val_version=val.version,
            principal_id=val.owner_id,
            trigger=Evaluation.Trigger.HTTP,
            status=outcome.status,
            started_at=started_at,
            finished_at=timezone.now(),
            duration_ms=outcome.duration_ms or int((time.monotonic() - clock) * 1000),
            logs=logs.lines,
            error=recorded_error(outcome.error, logs.redactor),
            kill_reason=outcome.kill_reason or "",
            runner=RUNNER,
            http_method=scope.get("method", ""),
            http_path=(scope.get("path", "") + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""))[:2000],
            http_status=outcome.http_status,
        )
    )


class HttpValRouter:
    """Sends requests for val hosts to the gateway, and everything else to the app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and is_val_host(_host(scope)):
            return await serve(scope, receive, send)
        if scope["type"] == "websocket" and is_val_host(_host(scope)):
            return await send({"type": "websocket.close", "code": 4404})
        return await self.app(scope, receive, send)
