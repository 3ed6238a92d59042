"""The arguments a val is run with."""

import json

MAX_ARGS_BYTES = 64 * 1024


def parse_args(text):
    """The JSON arguments typed into the Run form: (args, error message)."""
    text = (text or "").strip()
    if not text:
        return [], None
    if len(text.encode()) > MAX_ARGS_BYTES:
        return None, f"The arguments are too long: at most {MAX_ARGS_BYTES // 1024} KB of JSON."
    try:
        args = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"The arguments are not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
    except RecursionError:
        return None, "The arguments are nested too deeply."
    if not isinstance(args, list):
        return None, 'The arguments must be a JSON array, like ["Ada", 36]. Wrap a single argument in [ ].'
    return args, None
