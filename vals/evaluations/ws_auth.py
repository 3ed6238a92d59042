"""Who a websocket belongs to: an API token (the CLI), or the session cookie (the browser).

A browser's cookie-authenticated socket must come from our own origin. A token is sent
deliberately by its holder, never by a browser on its own, so it needs no Origin check.
"""

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser

from accounts.models import ApiToken


def header(scope, wanted):
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value.decode("latin-1")
    return None


def bearer_token(scope):
    text = header(scope, b"authorization") or ""
    return text.removeprefix("Bearer ").strip() if text.startswith("Bearer ") else None


def same_origin(scope):
    """The page that opened the socket is on the app's own host: not another site, and
    not an HTTP val's origin (those share the parent domain, so ALLOWED_HOSTS can't tell)."""
    from vals.http_gateway import is_val_host

    origin, host = header(scope, b"origin"), header(scope, b"host")
    if not origin or not host:
        return False
    origin_host = urlparse(origin).netloc.lower()
    return origin_host == host.lower() and not is_val_host(origin_host)


class TokenOrSessionAuth:
    def __init__(self, inner):
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        raw = bearer_token(scope)
        if raw is None:
            if not same_origin(scope):
                return await WebsocketDenier()(scope, receive, send)
            return await self.with_session(scope, receive, send)
        token = await database_sync_to_async(ApiToken.objects.authenticate)(raw)
        scope = {**scope, "user": token.user if token is not None else AnonymousUser()}
        return await self.inner(scope, receive, send)
