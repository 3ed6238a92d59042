"""Import grants: whom each sandboxed process imports vals for.

Every process is started with a random token of its own, which Deno sends (as
`Authorization: Bearer <token>`, through DENO_AUTH_TOKENS) with each import from the
module host. While the process runs a job, its token maps to the grant the caller
gave (for the platform: the evaluation's principal), and the module host asks
`import_grant(token)` before serving anything private. A token without a job, or of
a process that is gone, grants nothing.

Grants live in this process's memory. When the module host is another process (a
scheduler's sandboxes import from a web process), `use_shared_store(cache)` also keeps
them in a store both can read, with the Django cache API (`set`, `get`, `delete`), e.g.
Redis. The store holds a hash of each token, never the token, and errors there only
cost the other process its private imports.
"""

import hashlib
import logging
import secrets

logger = logging.getLogger(__name__)

_grants = {}
_shared = None
# Longer than any job needs its imports (a warm HTTP process imports when it starts).
SHARED_SECONDS = 3600


def use_shared_store(store):
    global _shared
    _shared = store


def _shared_key(token):
    return "import-grant:" + hashlib.sha256(token.encode()).hexdigest()


def _in_shared_store(method, token, *args):
    if _shared is None:
        return None
    try:
        return getattr(_shared, method)(_shared_key(token), *args)
    except Exception:
        logger.warning("The shared import-grant store failed (%s)", method, exc_info=True)
        return None


def new_token():
    return secrets.token_urlsafe(32)


def grant(token, value):
    if token and value is not None:
        _grants[token] = value
        _in_shared_store("set", token, value, SHARED_SECONDS)


def revoke(token):
    if _grants.pop(token, None) is not None:
        _in_shared_store("delete", token)


def import_grant(token):
    """The grant of the process holding `token` while it runs a job, else None."""
    if not isinstance(token, str) or not token:
        return None
    found = _grants.get(token)
    if found is None:
        found = _in_shared_store("get", token)
    return found
