"""The module host: every val is an ES module at /v/<username>/<valname>.ts (the latest
version) and /v/<username>/<valname>.ts?v=N (pinned, immutable).

Who is asking decides what is served:
- a sandboxed evaluation, known by its process's import token (runtime.import_grant),
  gets its principal's own vals as they are, private ones included, and another
  user's public val as a stub that runs it in Restricted Library Mode;
- anyone else (a browser, `deno run` on any machine, the Worker of Restricted Library
  Mode, which never has a token) gets public and unlisted vals' code, and the owner
  signed in to the site gets their private ones too.
A private val the asker may not see is the same 404 as a val that doesn't exist.

Every module has exactly one URL: the owner's own spelling of the names, nothing
percent-encoded, and no query but an optional `?v=<number>` (/std/ modules: none). Any
other spelling of it is that same 404, checked on the path as the client sent it (the
ASGI scope's raw_path), since Django decodes `/%76/alice/x.ts` to `/v/alice/x.ts`. A
cache keyed by URL, Deno's included, then never holds one module under two names.
"""

import operator
import re
from collections import deque
from functools import reduce

from asgiref.sync import sync_to_async
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

import runtime
from vals import imports, source
from valtown.module_origin import is_module_origin
from vals.models import Val, ValVersion
from vals.views import _requested_version

TYPESCRIPT = "application/typescript; charset=utf-8"
BEARER = re.compile(r"Bearer\s+(\S+)")
PINNED_QUERY = re.compile(r"v=(?:0|[1-9][0-9]*)")


def sent_path_and_query(request):
    """The path and query string as the client sent them, before any decoding. ASGI
    servers (daphne, which serves this platform, runserver included) give the raw path
    in the scope; a WSGI server may give it as RAW_URI or REQUEST_URI. Without either
    (Django's test client over WSGI), the decoded path is all there is."""
    scope = getattr(request, "scope", None)
    if scope is not None and scope.get("raw_path") is not None:
        return scope["raw_path"].decode("latin-1"), scope.get("query_string", b"").decode("latin-1")
    uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if uri:
        path, _, query = uri.partition("?")
        return path, query
    return request.path, request.META.get("QUERY_STRING", "")


def is_canonical(request, path, pinnable=False):
    """Whether the request names `path` (e.g. "/v/alice/x.ts") in its one canonical
    spelling, with no query, or only `v=<number>` when `pinnable`."""
    sent_path, query = sent_path_and_query(request)
    expected = request.META.get("SCRIPT_NAME", "") + path
    return sent_path == expected and (query == "" or (pinnable and PINNED_QUERY.fullmatch(query) is not None))


def sandbox_principal(request):
    """(True, principal id or None) for a request from a sandbox running a job, else (False, None).
    Only the module origin, where sandboxes import from, is asked for an import token."""
    if not is_module_origin(request):
        return False, None
    match = BEARER.fullmatch(request.headers.get("Authorization", "").strip())
    grant = runtime.import_grant(match.group(1)) if match else None
    if grant is None:
        return False, None
    return True, grant.get("principal_id")


def principal_for_evaluation(principal):
    """The import grant an evaluation made as `principal` (a user, or None) runs with."""
    return {"principal_id": principal.pk if principal is not None else None}


def resolve_star_exports(specifier):
    """The code an `export * from "<specifier>"` refers to, when it's a public val."""
    found = imports.val_named_by(specifier)
    if found is None:
        return None
    username, name, number = found
    val = Val.objects.named(username, name).exclude(privacy=Val.Privacy.PRIVATE).first()
    if val is None:
        return None
    if number is None:
        return val.code  # the latest version's, kept with the val
    version = val.versions.filter(number=number).first()
    return version.code if version else None


@require_GET
async def val_module(request, username, name):
    """A val as a module. Its source is read (for a stub's export names, or to aim its
    imports) in a thread of its own, not on the event loop nor in Django's one thread for
    sync views: a megabyte of someone's source takes a good part of a second to read,
    and every other page would wait behind it. The database is asked as usual."""
    val, number, code, from_sandbox, principal_id = await sync_to_async(_module_of)(request, username, name)
    await source.read_off_the_loop(source.analyse, code)
    if from_sandbox and val.owner_id != principal_id:
        # Pinned to what is latest now, so the Worker loads exactly the code described here.
        url = f"{imports.library_root()}/v/{val.owner.username}/{val.name}.ts?v={number}"
        star_codes = await _star_exports_of(code)
        names = await source.read_off_the_loop(imports.export_names, code, star_codes.get)
        response = HttpResponse(imports.library_stub(url, names), content_type=TYPESCRIPT)
        response["Cache-Control"] = "no-store"
        return response
    if from_sandbox:
        code = imports.point_imports_at_module_host(code)
    elif is_module_origin(request):
        # Restricted Library Mode's Worker: it may import from the library host alone.
        code = imports.point_imports_at_module_host(code, imports.library_root())
    response = HttpResponse(code, content_type=TYPESCRIPT)
    if from_sandbox or val.privacy == Val.Privacy.PRIVATE:
        response["Cache-Control"] = "private, no-store"
    else:
        # A pinned version never changes; the latest may change at any save.
        response["Cache-Control"] = "public, max-age=31536000, immutable" if "v" in request.GET else "no-cache"
    return response


def _module_of(request, username, name):
    """(val, version number, code, from a sandbox?, principal id) of the module the
    request names, or a 404 for one the asker may not see or a spelling not its own."""
    from_sandbox, principal_id = sandbox_principal(request)
    if not from_sandbox and request.user.is_authenticated:
        principal_id = request.user.pk
    val = Val.objects.named(username, name).select_related("owner").first()
    if val is None or (val.privacy == Val.Privacy.PRIVATE and val.owner_id != principal_id):
        raise Http404("No such val.")
    if not is_canonical(request, f"/v/{val.owner.username}/{val.name}.ts", pinnable=True):
        raise Http404("No such val.")
    version = _requested_version(request, val)
    # The latest version's number and code are kept with the val itself.
    number, code = (version.number, version.code) if version else (val.version, val.code)
    return val, number, code, from_sandbox, principal_id


async def _star_exports_of(code):
    """{specifier: code} of the public vals code's `export * from` chains name, as far as
    imports.export_names follows them, each read in a thread as above."""
    found = {}
    fetched = {}  # by (user, val, version): spellings of one val are fetched once
    pending = deque(source.star_exports(code))
    while pending and len(fetched) < imports.MAX_STAR_EXPORTS_FOLLOWED:
        specifier = pending.popleft()
        named = imports.val_named_by(specifier)
        if specifier in found or named is None:
            continue
        key = (named[0].lower(), named[1].lower(), named[2])
        if key in fetched:
            found[specifier] = fetched[key]
            continue
        other = found[specifier] = fetched[key] = await sync_to_async(resolve_star_exports)(specifier)
        if other is not None:
            await source.read_off_the_loop(source.analyse, other)
            pending.extend(source.star_exports(other))
    return found


# How much of the principal's own vals' source needs_library_worker reads, at most.
MAX_SOURCE_READ_FOR_LIBRARY_WORKER = 4_000_000


def needs_library_worker(code, principal_id, limit=100):
    """Whether running `code` for principal_id imports another user's val, directly or
    through the principal's own vals (so Restricted Library Mode's Worker must start).
    One query for each level of imports, at most `limit` vals looked at and
    MAX_SOURCE_READ_FOR_LIBRARY_WORKER characters of their source read in all; past that
    the answer is yes, which costs only a Worker that may go unused."""
    seen = set()
    level = imports.imported_vals(code)
    budget = MAX_SOURCE_READ_FOR_LIBRARY_WORKER
    while level and len(seen) < limit:
        wanted = []
        for username, name, number in level:
            item = (username.lower(), name.lower(), number)
            if item not in seen and len(seen) < limit:
                seen.add(item)
                wanted.append(item)
        vals = Val.objects.named_any((username, name) for username, name, _ in wanted)
        next_level, pinned = [], []
        for username, name, number in wanted:
            val = vals.get((username, name))
            if val is None:
                continue
            if val.owner_id != principal_id:
                if val.privacy != Val.Privacy.PRIVATE:
                    return True
                continue
            if number is None:
                budget -= len(val.code)
                if budget < 0:
                    return True
                next_level += imports.imported_vals(val.code)  # the latest version's
            else:
                pinned.append(Q(val_id=val.pk, number=number))
        if pinned:
            for code_of_version in ValVersion.objects.filter(reduce(operator.or_, pinned)).values_list("code", flat=True):
                budget -= len(code_of_version)
                if budget < 0:
                    return True
                next_level += imports.imported_vals(code_of_version)
        level = next_level
    return False
