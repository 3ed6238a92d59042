"""Fixed-window counters in the shared cache (Redis when scaled out), for rate limits."""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)


def hit(bucket, window_seconds):
    """Count one more hit in the bucket's current window. Returns (hits so far, seconds
    until the window ends). If the shared cache is down (Redis lost), the hit is let
    through uncounted: a brief outage of the counter must not take the API down."""
    now = time.time()
    key = f"ratelimit:{bucket}:{window_seconds}:{int(now // window_seconds)}"
    try:
        count = 1 if cache.add(key, 1, timeout=window_seconds + 10) else cache.incr(key)
    except ValueError:  # the key expired between add() and incr()
        count = 1 if cache.add(key, 1, timeout=window_seconds + 10) else cache.incr(key)
    except Exception:
        logger.warning("Rate limit counter unavailable; letting %s through", bucket, exc_info=True)
        count = 0
    return count, window_seconds - int(now % window_seconds)
