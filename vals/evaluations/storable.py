"""Making what a val produced safe to store and show.

A val can produce text no database takes (lone UTF-16 surrogates, NUL characters) and
JSON nested deeper than any recursion allows. Nothing a val produces may stop its
evaluation from being recorded."""

MAX_DEPTH = 64
TOO_DEEP = "[nested too deeply to show]"


def storable_text(text):
    if not isinstance(text, str):
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def storable(value, depth=0):
    if isinstance(value, str):
        return storable_text(value)
    if depth >= MAX_DEPTH and isinstance(value, (list, dict)):
        return TOO_DEEP
    if isinstance(value, list):
        return [storable(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item, depth + 1) for key, item in value.items()}
    return value
