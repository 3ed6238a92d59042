"""Import grants: whom each sandboxed process imports vals for.

Every process is started with a random token of its own, which Deno sends (as
`Authorization: Bearer <token>`, through DENO_AUTH_TOKENS) with each import from the
module host. While the process runs a job, its token maps to the grant the caller
gave (for the platform: the evaluation's principal), and the module host asks
`import_grant(token)` before serving anything private. A token without a job, or of
a process that is gone, grants nothing.

Grants live in this process's memory, so the module host that sandboxes import from
must be served by the same process that runs them (see PoolConfig.module_host).
"""

import secrets

_grants = {}


def new_token():
    return secrets.token_urlsafe(32)


def grant(token, value):
    if token and value is not None:
        _grants[token] = value


def revoke(token):
    _grants.pop(token, None)


def import_grant(token):
    """The grant of the process holding `token` while it runs a job, else None."""
    if not isinstance(token, str) or not token:
        return None
    return _grants.get(token)
