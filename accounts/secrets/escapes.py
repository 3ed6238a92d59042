"""Every way a val's output can spell a secret: as it is, and as JSON.stringify and
console.log (Deno.inspect) escape it. Each form was checked against the Deno the runtime
runs (deno 2.9); the Redactor masks all of them.

Deno.inspect quotes a string with the first of " ' ` that it doesn't contain (" when it
contains all three), puts a backslash before that quote and before every backslash, and
writes \\b \\f \\n \\r \\t \\v and \\xNN for the other characters in U+0000-U+001F and
U+007F-U+009F. A string longer than 10,000 UTF-16 units is cut there ("... N more
characters"), and one that doesn't fit on a line and holds newlines is split after each
of them into one quoted piece per line, joined by ` +`, a newline and indentation.
JSON.stringify writes \\" \\\\ \\b \\f \\n \\r \\t and \\u00XX for the other characters below
U+0020 (and \\uDXXX for lone surrogates, which no secret has: it is stored as UTF-8)."""

import json
import re

QUOTES = ('"', "'", "`")
# Deno.inspect's maxStringLength, in UTF-16 code units.
INSPECT_MAX_STRING_LENGTH = 10_000
# What ends every piece of a split string but the last (before the newline, which the
# next piece's form may start with), and the deepest indentation of a piece: the console
# inspects 6 levels deep, each level indents by 2, and Maps, classes and error causes
# add a level of their own.
SPLIT_JOIN = " +"
SPLIT_INDENTS = range(2, 33, 2)
# A line of a split secret this long (with its quotes) is told apart by itself; a shorter
# one (the "pass" of "user\npass") only with the newline and indentation before it, so
# that it doesn't mask the same letters in any other quoted string.
DISTINCT_PIECE_LENGTH = 16

_INSPECT_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
_INSPECT_CONTROL.update({ord(c): e for c, e in zip("\b\f\n\r\t\v", ("\\b", "\\f", "\\n", "\\r", "\\t", "\\v"))})
_INSPECT_CONTROL[ord("\\")] = "\\\\"
_INSPECT_TABLES = {None: _INSPECT_CONTROL, **{q: {**_INSPECT_CONTROL, ord(q): "\\" + q} for q in QUOTES}}
# What either printer escapes, or splits a string at.
_ESCAPED_BY_SOMETHING = re.compile(r"""[\x00-\x1f\x7f-\x9f\\"'`]""")


def needs_escaping(text):
    """Whether JSON or Deno.inspect write text other than as it is."""
    return _ESCAPED_BY_SOMETHING.search(text) is not None


def inspect_quote(text):
    """The quote Deno.inspect puts around text."""
    return next((q for q in QUOTES if q not in text), QUOTES[0])


def inspect_escaped(text, quote=None):
    """text between the quotes of Deno.inspect's `quote`-quoted string. With quote=None,
    as it is between a quote it doesn't contain (the other quotes are not escaped)."""
    if not needs_escaping(text):
        return text  # most secrets: and translate() is slow for a table like this
    return text.translate(_INSPECT_TABLES[quote])


def json_escaped(text):
    """text between the quotes of JSON.stringify(text)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def inspect_forms(text):
    # Within a longer string the quote is chosen by the whole string, so the text's "
    # is escaped or not; ' and ` are only ever escaped when they are the quote, and a
    # string quoted with one doesn't contain it.
    return {inspect_escaped(text), inspect_escaped(text, '"')}


JSON_AND_INSPECT = (json_escaped, inspect_escaped, lambda t: inspect_escaped(t, '"'))


def escaped_forms(text):
    """text inside one layer of JSON or console.log quoting."""
    return {layer(text) for layer in JSON_AND_INSPECT}


def doubly_escaped_forms(text):
    """text inside two layers, in any order: a logged object holding a JSON string, JSON
    holding JSON, a log line quoting another."""
    return {outer(inner) for inner in escaped_forms(text) for outer in JSON_AND_INSPECT}


def split_forms(text):
    """text as Deno.inspect writes it when it splits a long string after each newline:
    one form per line, so that the joins between them, whose indentation varies, stay
    out of the forms (and a run of lines is masked line by line)."""
    pieces = [piece for piece in re.split(r"(?<=\n)", text) if piece]
    if len(pieces) < 2:
        return set()
    first, *middle, last = pieces
    # Before the first line is whatever the string held before the secret, so it is
    # masked wherever it ends a line, however short: a split string's line that ends
    # the same way is masked too, rather than the secret's first line left showing.
    forms = {form + quote + SPLIT_JOIN for form in inspect_forms(first) for quote in QUOTES}
    # A line in the middle is a whole piece, quoted by itself: exact, however short.
    for piece in middle:
        quote = inspect_quote(piece)
        forms.add(quote + inspect_escaped(piece, quote) + quote + SPLIT_JOIN)
    for form in inspect_forms(last):
        for quote in QUOTES:
            forms |= _after_indentation(quote + form)
    return forms


def _after_indentation(form):
    """The last line of a split string, where it starts: by itself when it is long enough
    to be told apart, else with the newline and indentation that start every line but
    the first."""
    if len(form) >= DISTINCT_PIECE_LENGTH:
        return {form}
    return {"\n" + " " * indent + form for indent in SPLIT_INDENTS}


def printed_parts(secret):
    """What a secret is searched for as: itself, or, when it is longer than Deno.inspect
    shows whole, the part it shows and the rest. Each part is masked where it stands,
    the whole secret as two masks. (Searching for the whole and for the part shown would
    do the same, but an automaton builds many times slower for patterns that are
    prefixes of others.)"""
    shown, units = 0, 0
    for shown, character in enumerate(secret):
        units += 2 if character > "\uffff" else 1
        if units > INSPECT_MAX_STRING_LENGTH:
            break
    else:
        return [secret]
    # A character cut in two shows as U+FFFD after the part, which is left showing.
    head, rest = secret[:shown], secret[shown:]
    if len(rest) < DISTINCT_PIECE_LENGTH:
        return [secret, head]  # a short rest by itself would mask its letters anywhere
    return [head, rest]


def once_printed_forms(part):
    """The spellings of a part of a secret that one layer of printing makes."""
    return escaped_forms(part) | split_forms(part)


def twice_printed_forms(part):
    """The spellings that two layers make and one doesn't: these can be many times longer
    than the part, for one full of quotes and control characters."""
    return doubly_escaped_forms(part) - escaped_forms(part)
