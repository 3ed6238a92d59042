"""Whom an evaluation is charged to: its tenant, for the limit on runs in progress and
for fair turns at the runtime's processes.

A run is charged to its top-level caller: the user who pressed Run or whose token called
the API, the owner for cron and email runs, or an anonymous caller's address. A run that
another run started with api() is charged to the same tenant as the run that started it,
never to the val's owner, so nobody can fill someone else's share by calling their vals.
Anonymous callers get a tenant per address (IPv6 addresses per /64, what one machine is
usually given), and all of them together share one tenant's share of the runtime.
"""

import functools
import ipaddress

import runtime

ANONYMOUS_GROUP = "anonymous"


def of_user(user):
    return f"user:{user.pk}"


@functools.lru_cache(maxsize=4096)  # an HTTP val's every request asks
def of_address(address):
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"{ANONYMOUS_GROUP}:unknown"
    if parsed.version == 6:
        if parsed.ipv4_mapped is not None:
            return f"{ANONYMOUS_GROUP}:{parsed.ipv4_mapped}"
        return f"{ANONYMOUS_GROUP}:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"{ANONYMOUS_GROUP}:{parsed}"


def of_caller(user, address):
    """A signed-in user's tenant, or the address's for an anonymous caller."""
    return of_user(user) if user is not None and user.is_authenticated else of_address(address)


def for_runtime(tenant):
    """The runtime's Tenant for a tenant's name: anonymous ones share one group's cap."""
    group = ANONYMOUS_GROUP if tenant.startswith(ANONYMOUS_GROUP + ":") else None
    return runtime.Tenant(tenant, group)
