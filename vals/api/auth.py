"""Bearer-token auth and rate limits, per token and per client IP."""

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
    def __call__(self, request):
        check_rate(f"ip:{client_ip(request)}", settings.API_RATE_LIMIT_PER_IP)
        return super().__call__(request)

    def authenticate(self, request, token):
        api_token = ApiToken.objects.authenticate(token)
        if api_token is None:
            return None
        check_rate(f"token:{api_token.pk}", settings.API_RATE_LIMIT_PER_TOKEN)
        request.user = api_token.user
        return api_token


def require_write(request):
    if not request.auth.can_write:
        raise ApiError(403, "forbidden", "This token is read-only; this needs a read-write token.")
