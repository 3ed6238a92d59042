"""Vals importing vals: which vals a val imports, pointing its imports at the module
host, and the stub that loads another user's val in Restricted Library Mode.

Imports are read by vals/source.py, in import positions only (`from "..."`, `import
"..."`, `import("...")`, `export ... from "..."`). A computed import (`import(url)`) is
not seen here: it still works for the principal's own vals, and another user's val
imported that way is refused with a clear error by the harness.
"""

import json
import re
from collections import deque

from django.conf import settings

from vals import source

VAL_PATH = re.compile(r"/v/(?P<username>[A-Za-z0-9_-]+)/(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.ts(?:\?v=(?P<version>\d+))?")
MODULE_PATH = re.compile(r"/(?:v|std)/[^\s\"'`]*")


def site_root():
    return settings.SITE_ROOT.rstrip("/")


def module_root():
    """Where sandboxes fetch modules from, with their import token."""
    return f"{settings.RUNTIME_MODULE_SCHEME}://{settings.RUNTIME_MODULE_HOST}"


def library_root():
    """The same module host by its public name: no token, public code only."""
    return f"{settings.RUNTIME_LIBRARY_SCHEME}://{settings.RUNTIME_LIBRARY_HOST}"


def _our_path(specifier, pattern):
    """The match of pattern on specifier's path, when the specifier names this platform's
    module host: root-relative, by the site's public address, or by either module-host
    name. None for any other specifier."""
    for prefix in ("", site_root(), library_root(), module_root()):
        if specifier.startswith(prefix + "/"):
            match = pattern.fullmatch(specifier, len(prefix))
            if match is not None:
                return match
    return None


def val_named_by(specifier):
    """(username, name, version or None) of the val a specifier names, or None."""
    match = _our_path(specifier, VAL_PATH)
    if match is None:
        return None
    version = match.group("version")
    return match.group("username"), match.group("name"), int(version) if version else None


def imported_vals(code):
    """(username, name, version or None) for each val the code imports, in order, once each."""
    found = {}
    for specifier in source.specifiers(code):
        item = val_named_by(specifier.text)
        if item is not None:
            found.setdefault(item, None)
    return list(found)


def point_imports_at_module_host(code, root=None):
    """The code with its imports of vals and /std/ modules aimed at the module host by
    the name that gets the import token (or `root`, e.g. library_root() for Restricted
    Library Mode's Worker): root-relative paths (which a module loaded inline can't
    resolve) and the site's public address (which sandboxes may not import from) alike."""
    root = root or module_root()

    def aimed(specifier):
        match = _our_path(specifier, MODULE_PATH)
        return root + match.group() if match is not None else None

    return source.with_specifiers_replaced(code, aimed)


# --- Export names, for the stub -------------------------------------------------------

# How many `export * from` modules one stub's names are gathered from, and how much of
# their source is read in all: a stub misses the names past these, and an import of one
# of those fails with a clear error.
MAX_STAR_EXPORTS_FOLLOWED = 20
MAX_STAR_SOURCE_READ = 4_000_000
IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


def export_names(code, resolve_star=None):
    """The names a module exports at run time (type-only exports left out).
    `resolve_star(specifier)` may return another module's code, to follow `export * from`
    (at most MAX_STAR_EXPORTS_FOLLOWED vals and MAX_STAR_SOURCE_READ of source in all;
    spellings that name one val version are followed once)."""
    names = dict.fromkeys(name for name in source.export_names(code) if IDENTIFIER.fullmatch(name))
    if resolve_star is None:
        return list(names)
    followed = set()
    pending = deque(source.star_exports(code))
    budget = MAX_STAR_SOURCE_READ
    while pending and len(followed) < MAX_STAR_EXPORTS_FOLLOWED:
        specifier = pending.popleft()
        named = val_named_by(specifier)
        key = (named[0].lower(), named[1].lower(), named[2]) if named else specifier
        if key in followed:
            continue
        followed.add(key)
        other = resolve_star(specifier)
        if other is None:
            continue
        budget -= len(other)
        if budget < 0:
            break
        for name in source.export_names(other):
            if name != "default" and IDENTIFIER.fullmatch(name):
                names.setdefault(name, None)
        pending.extend(source.star_exports(other))
    return list(names)


def library_stub(url, names):
    """The module the main isolate gets instead of another user's val: it loads the val
    in Restricted Library Mode's Worker and re-exports what it exports."""
    lines = [
        "// Another user's val, run in Restricted Library Mode: in a Worker with no access to your",
        "// secrets. Its functions are async here, and values cross by structured clone.",
        f"const lib = await (globalThis as any)[Symbol.for(\"valtown.library\")]({json.dumps(url)}, {json.dumps(names)});",
    ]
    for name in names:
        if name == "default":
            lines.append('export default lib["default"];')
        else:
            lines.append(f"export const {name} = lib[{json.dumps(name)}];")
    return "\n".join(lines) + "\n"

