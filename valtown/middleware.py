"""The Content-Security-Policy header on every page the app serves.

Scripts come only from our own static files: no inline <script>, no on*= attributes, no
eval. So even markup that slipped past escaping could not run. Styles likewise, except a
<style> element carrying this response's nonce (the code editor makes one); the val page
hands the nonce to its script in <meta name="csp-nonce">, whose nonce CSS can't read.

HTTP vals are served by vals/http_gateway.py before Django, so this never touches them.
"""

import secrets

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin


NONCE = "'nonce-NONCE'"


def policy_template():
    """The policy, with NONCE where each response's nonce goes."""
    directives = {name: list(sources) for name, sources in settings.CONTENT_SECURITY_POLICY.items()}
    directives.setdefault("style-src", ["'self'"]).append(NONCE)
    # The val page previews an HTTP val in a sandboxed iframe from the val's own origin.
    val_origins = f"{settings.HTTP_VAL_SCHEME}://*.{settings.HTTP_VAL_DOMAIN}"
    directives.setdefault("frame-src", ["'self'"]).append(val_origins)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    # MiddlewareMixin: sync and async alike, so async views (Run) need no thread hop.
    def __init__(self, get_response):
        super().__init__(get_response)
        self.template = policy_template()

    def process_request(self, request):
        request.csp_nonce = secrets.token_urlsafe(18)

    def process_response(self, request, response):
        nonce = getattr(request, "csp_nonce", None) or secrets.token_urlsafe(18)
        response.headers.setdefault("Content-Security-Policy", self.template.replace(NONCE, f"'nonce-{nonce}'"))
        return response
