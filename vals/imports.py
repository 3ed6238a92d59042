"""Vals importing vals: finding imports in code, pointing them at the module host,
and the stub that loads another user's val in Restricted Library Mode.

Imports are found in the source text, in import positions only (`from "..."`,
`import "..."`, `import("...")`, `export ... from "..."`). A computed import
(`import(url)`) is not seen here: it still works for the principal's own vals, and
another user's val imported that way is refused with a clear error by the harness.
"""

import json
import re

from django.conf import settings

# The quote and specifier after an import keyword: `from "x"`, `import "x"`, `import("x")`.
IMPORT_POSITION = r"""(?P<keyword>\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(?P<quote>["'])"""
VAL_PATH = r"/v/(?P<username>[A-Za-z0-9_-]+)/(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.ts(?:\?v=(?P<version>\d+))?"


def site_root():
    return settings.SITE_ROOT.rstrip("/")


def module_root():
    """Where sandboxes fetch modules from, with their import token."""
    return f"{settings.RUNTIME_MODULE_SCHEME}://{settings.RUNTIME_MODULE_HOST}"


def library_root():
    """The same module host by its public name: no token, public code only."""
    return f"{settings.RUNTIME_LIBRARY_SCHEME}://{settings.RUNTIME_LIBRARY_HOST}"


def _our_prefixes():
    """Spellings of the module host a val's author may use: root-relative, the site's
    public address, and the library name."""
    return ["", re.escape(site_root()), re.escape(library_root()), re.escape(module_root())]


def _specifier_pattern(path_pattern):
    hosts = "|".join(prefix for prefix in _our_prefixes() if prefix)
    return re.compile(IMPORT_POSITION + rf"(?P<host>(?:{hosts})?)(?P<path>{path_pattern})(?P=quote)")


def imported_vals(code):
    """(username, name, version or None) for each val the code imports, in order, once each."""
    found = []
    for match in _specifier_pattern(VAL_PATH).finditer(code or ""):
        version = match.group("version")
        item = (match.group("username"), match.group("name"), int(version) if version else None)
        if item not in found:
            found.append(item)
    return found


def point_imports_at_module_host(code):
    """The code with its imports of vals and /std/ modules aimed at the module host by
    the name that gets the import token: root-relative paths (which a module loaded
    inline can't resolve) and the site's public address (which the main isolate may
    not import from) alike."""
    pattern = _specifier_pattern(r"/(?:v|std)/[^\s\"'`]*")
    root = module_root()
    return pattern.sub(lambda m: f"{m.group('keyword')}{m.group('quote')}{root}{m.group('path')}{m.group('quote')}", code)


# --- Export names, for the stub -------------------------------------------------------

COMMENTS = re.compile(r"/\*.*?\*/|(?<![:\"'\w])//[^\n]*", re.S)
DECLARED_EXPORT = re.compile(
    r"^\s*export\s+(?:declare\s+)?(?:async\s+)?(?:function\s*\*?|class|const|let|var|enum)\s+([A-Za-z_$][\w$]*)", re.M
)
DESTRUCTURED_EXPORT = re.compile(r"^\s*export\s+(?:const|let|var)\s*\{([^}]*)\}\s*=", re.M)
EXPORT_LIST = re.compile(r"^\s*export\s*\{([^}]*)\}", re.M)
DEFAULT_EXPORT = re.compile(r"^\s*export\s+default\b", re.M)
STAR_EXPORT = re.compile(r"""^\s*export\s*\*\s*from\s*["']([^"']+)["']""", re.M)
IDENTIFIER = re.compile(r"^[A-Za-z_$][\w$]*$")


def export_names(code, resolve_star=None, _seen=None):
    """The names a module exports at run time (type-only exports left out), found in its
    text. `resolve_star(specifier)` may return another module's code, to follow
    `export * from`."""
    text = COMMENTS.sub("", code or "")
    names = []

    def add(name):
        if IDENTIFIER.match(name) and name not in names:
            names.append(name)

    if DEFAULT_EXPORT.search(text):
        names.append("default")
    for match in DECLARED_EXPORT.finditer(text):
        add(match.group(1))
    for match in DESTRUCTURED_EXPORT.finditer(text):
        for part in match.group(1).split(","):
            add(part.split(":")[-1].split("=")[0].strip())
    for match in EXPORT_LIST.finditer(text):
        if re.match(r"^\s*export\s+type\b", match.group(0)):
            continue
        for part in match.group(1).split(","):
            part = part.strip()
            if not part or part.startswith("type "):
                continue
            add(part.split(" as ")[-1].strip())
    if resolve_star is not None:
        seen = _seen if _seen is not None else set()
        for match in STAR_EXPORT.finditer(text):
            specifier = match.group(1)
            if specifier in seen:
                continue
            seen.add(specifier)
            other = resolve_star(specifier)
            if other is not None:
                for name in export_names(other, resolve_star, seen):
                    if name != "default":
                        add(name)
    return names


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

