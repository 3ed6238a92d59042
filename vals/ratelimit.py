"""Fixed-window counters in the shared cache (Redis when scaled out), for rate limits."""

import time

from django.core.cache import cache


def hit(bucket, window_seconds):
    """Count one more hit in the bucket's current window. Returns (hits so far, seconds
    until the window ends)."""
    now = time.time()
    key = f"ratelimit:{bucket}:{window_seconds}:{int(now // window_seconds)}"
    count = 1 if cache.add(key, 1, timeout=window_seconds + 10) else cache.incr(key)
    return count, window_seconds - int(now % window_seconds)
