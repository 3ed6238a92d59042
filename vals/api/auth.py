"""Bearer-token auth with scopes, and rate limits per token and per client IP.

Every operation names the access it needs in its `auth`: READ to look, WRITE to change
anything or to run code (a run acts with the user's secrets, blobs, email and api(), so
it is a write, even behind a GET). The API's default is WRITE, so an operation that
forgets to say is never open to a read-only token. The check itself is here alone:
TokenAuth.authenticate."""

from django.conf import settings
from ninja.security import HttpBearer

from accounts.models import ApiToken
from vals import ratelimit
from vals.api.errors import ApiError


def client_ip(request):
    return request.META.get("REMOTE_ADDR", "unknown")


def check_rate(bucket, limit_per_minute):
    """Raises a 429 past the limit, in one-minute windows."""
    count, retry_after = ratelimit.hit(bucket, 60)
    if count > limit_per_minute:
        raise ApiError(429, "rate_limited", f"Too many requests: at most {limit_per_minute} a minute.", {"Retry-After": str(retry_after)})


class TokenAuth(HttpBearer):
    """A usable token (not expired, its user active) whose scope allows `access`."""

    def __init__(self, access):
        super().__init__()
        if access not in (ApiToken.Scope.READ, ApiToken.Scope.WRITE):
            raise ValueError(f"unknown access {access!r}")
        self.access = access

    def __call__(self, request):
        check_rate(f"ip:{client_ip(request)}", settings.API_RATE_LIMIT_PER_IP)
        return super().__call__(request)

    def authenticate(self, request, token):
        api_token = ApiToken.objects.authenticate(token)
        if api_token is None:
            return None
        check_rate(f"token:{api_token.pk}", settings.API_RATE_LIMIT_PER_TOKEN)
        if self.access == ApiToken.Scope.WRITE and not api_token.can_write:
            raise ApiError(
                403, "forbidden", "This token is read-only; this needs a read-write token (running code is a write)."
            )
        request.user = api_token.user
        return api_token


READ = TokenAuth(ApiToken.Scope.READ)
# Changes state or runs code.
WRITE = TokenAuth(ApiToken.Scope.WRITE)
