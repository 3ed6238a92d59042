"""The module origin: the port sandboxes import vals and /std/ modules from.

Sandboxes may import only from the module host (with their import token) and the
library host (Restricted Library Mode's Worker, without one). Both names reach this
listener, which answers nothing but GET and HEAD of /v/... and /std/...: were it the
whole site, a val could import /v1/run/... or /v1/eval/... as a JSON module and start
runs that no api() allowance counts. It listens on loopback beside the site's own port
(`manage.py runserver` adds it, the Procfile passes it to daphne), and is known by the
port a request arrived on, which a client can't choose the way it chooses a Host header.

Only requests that arrive here are asked for an import token (vals/module_host.py).
"""

import re
from urllib.parse import urlparse

from django.conf import settings

# The module host's two kinds of path (vals/urls.py routes them; the views check the
# spelling further). A val's page, /v/<user>/<val>, is not one of them.
MODULE_PATH = re.compile(r"/v/[A-Za-z0-9_-]+/[A-Za-z_][A-Za-z0-9_]*\.ts|/std/[a-z]+(?:\.ts)?")
SCOPE_KEY = "valtown.module_origin"


def module_origin_port():
    """The port RUNTIME_MODULE_HOST names: the module origin's."""
    return urlparse("//" + settings.RUNTIME_MODULE_HOST).port


def endpoint():
    """The module origin as a daphne endpoint description, on loopback."""
    return f"tcp:port={module_origin_port()}:interface=127.0.0.1"


def is_module_origin(request):
    """Whether a Django request arrived on the module origin."""
    return bool(getattr(request, "scope", {}).get(SCOPE_KEY))


class ModuleOrigin:
    """Passes requests on the module origin's port to the app only for module paths,
    marked as such in the scope; everything else there is a plain 404."""

    def __init__(self, app):
        self.app = app
        self.port = module_origin_port()

    async def __call__(self, scope, receive, send):
        server = scope.get("server") if scope["type"] in ("http", "websocket") else None
        if not server or len(server) < 2 or server[1] != self.port:
            return await self.app(scope, receive, send)
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD") or not MODULE_PATH.fullmatch(scope.get("path", "")):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 4404})
            body = b"Only modules are served here.\n"
            await send({
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
            })
            return await send({"type": "http.response.body", "body": body})
        return await self.app({**scope, SCOPE_KEY: True}, receive, send)
