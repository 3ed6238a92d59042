"""Every reading of a val's TypeScript source on the host, in one place.

The host reads untrusted source for a few facts: which modules it imports (to aim them
at the module host and to list them on the val's page), which names it exports (for
Restricted Library Mode's stub), and whether it is a module at all (/v1/eval). All of it
goes through one tokenizer that makes a single pass over the text: each token is one
match of a pattern that can only move forward, so the cost is linear in the length of
the text whatever it holds (a megabyte of blank lines, an unclosed comment or string,
deep nesting). Regular expressions run over the whole text, with `^\\s*` under re.M or
`.*?` under re.S, cost O(n²) on such input and held the GIL while they did.

The tokenizer knows what it must to tell code from text: comments, strings, template
literals (with their `${...}` holes), regular expression literals (told from division
by the token before, as JavaScript engines' pre-parsers do) and braces. It is not a
parser: a construct it can't follow (JSX text with an apostrophe, say) costs at most the
facts on that line, and every use of these facts fails closed (an import not seen is an
import that fails with a clear error, not one that gets more access).

Answers are cached by the text's digest: a version's source never changes, and the
module host and the val page ask about the same versions again and again.
"""

import asyncio
import functools
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass

# Whitespace and comments, in one token. `//` and `/*` always start comments: no
# regular expression literal begins with `/` or `*`. An unclosed block comment runs to
# the end of the text.
_SKIP = r"(?:[\s\ufeff]+|//[^\n\r\u2028\u2029]*|/\*[^*]*(?:\*+[^*/][^*]*)*(?:\*+/|\**\Z))+"
# Strings stop at the end of their line when unclosed, as the language does.
_STRING = r""""[^"\\\n\r]*(?:\\[\s\S][^"\\\n\r]*)*"?|'[^'\\\n\r]*(?:\\[\s\S][^'\\\n\r]*)*'?"""
_NAME = r"[A-Za-z_$\u0080-\uffff][\w$\u0080-\uffff]*"
_NUMBER = r"\.?\d[\w.]*"
_PUNCT = r"=>|\.\.\.|\?\.|[{}()\[\];,<>.=:?!+\-*%&|^~@#/\\]"

# One token, after any whitespace and comments before it, so that the pattern matches
# at every position it is tried at and the search never scans ahead: the skip is atomic
# (never given back), the end of the text is a token, and so is any other character.
_TOKEN = re.compile(
    rf"(?>{_SKIP})?(?:(?P<string>{_STRING})|(?P<name>{_NAME})|(?P<number>{_NUMBER})|(?P<template>`)"
    rf"|(?P<punct>{_PUNCT})|(?P<end>\Z)|(?P<other>[\s\S]))"
)
# The rest of a template literal from just after "`" or "}": up to its closing "`" or
# its next "${".
_TEMPLATE_PART = re.compile(r"[^`\\$]*(?:(?:\\[\s\S]|\$(?!\{))[^`\\$]*)*(?:`|\$\{)?")
_REGEX_LITERAL = re.compile(r"/[^/\\\[\n\r]*(?:(?:\\.|\[[^\]\\\n\r]*(?:\\.[^\]\\\n\r]*)*\]?)[^/\\\[\n\r]*)*/?[A-Za-z]*")

# After these a "/" starts a regular expression; after anything else (a name, a number,
# a string, ")" or "]") it divides.
_KEYWORDS_BEFORE_AN_EXPRESSION = frozenset(
    "return typeof instanceof in of new delete void throw case do else yield await".split()
)

# Token kinds the readers below see.
NAME, STRING, NUMBER, PUNCT, TEMPLATE, REGEX = "name", "string", "number", "punct", "template", "regex"


class Token(tuple):
    """(kind, text, start, end, depth, after_dot): depth is how many braces are open
    around it (0 at the module's top level); after_dot marks a property name
    (`x.import`), which is never a keyword. A tuple, as a megabyte of source is
    hundreds of thousands of them."""

    __slots__ = ()
    kind = property(lambda self: self[0])
    text = property(lambda self: self[1])
    start = property(lambda self: self[2])
    end = property(lambda self: self[3])
    depth = property(lambda self: self[4])
    after_dot = property(lambda self: self[5])


class _Lexer:
    """The significant tokens of code in one linear pass, noticing module specifiers
    on the way (they are purely lexical: `from "x"`, `import "x"`, `import("x")`), so
    that no reader can skip one.

    Only the tokens a reader asks for are made and handed out: with `detailed` off, the
    lexer hands out just the top-level `export` keywords, and the analysis turns it on
    for the statement after one. Most of a module is read without a Token made for it."""

    def __init__(self, code, detailed=True):
        self.code = code or ""
        self.detailed = detailed
        self.specifiers = []
        self.imports_at_top_level = False  # a static import, not import() or import.meta

    def __iter__(self):
        code = self.code
        stack = []  # "{" for a block or object, "${" for a template literal's hole
        specifiers = self.specifiers
        # The three tokens before, for the specifier patterns, as plain locals.
        kind1 = text1 = None  # the token before
        depth1, after_dot1, start1, end1 = 0, False, 0, 0
        kind2 = text2 = None  # two before
        after_dot2 = False
        kind3 = text3 = None  # three before
        after_dot3 = False
        regex_may_start = True
        finder = _TOKEN.finditer(code)
        while (match := next(finder, None)) is not None:
            kind = match.lastgroup
            if kind == "end":
                return
            if kind == "other":
                continue
            start = match.start(kind)
            text = match.group(kind)
            end = match.end()
            depth = None
            if kind == "punct":
                if text == "/" and regex_may_start:
                    end = _REGEX_LITERAL.match(code, start).end()
                    kind, text = REGEX, code[start:end]
                    finder = _TOKEN.finditer(code, end)
                elif text == "}" and stack and stack[-1] == "${":
                    stack.pop()
                    kind = TEMPLATE
                elif text == "{":
                    depth = len(stack)
                    stack.append("{")
                elif text == "}" and stack:
                    stack.pop()
            elif kind == "template":
                kind = TEMPLATE
            if kind == TEMPLATE:
                end = _TEMPLATE_PART.match(code, end).end()
                text = code[start:end]
                if text.endswith("${"):  # an escaped "\${" is part of an escape above
                    stack.append("${")
                finder = _TOKEN.finditer(code, end)
            if depth is None:
                depth = len(stack)
            after_dot = kind1 == PUNCT and (text1 == "." or text1 == "?.")
            # Module specifiers.
            if kind1 == NAME and not after_dot1:
                if kind == STRING and (text1 == "from" or text1 == "import"):
                    _add(specifiers, text, start, end)
                if text1 == "import" and depth1 == 0 and not (kind == PUNCT and text in ("(", ".", "=", "?.")):
                    self.imports_at_top_level = True
            elif (
                kind == PUNCT and (text == ")" or text == ",") and kind1 == STRING
                and kind2 == PUNCT and text2 == "(" and kind3 == NAME and text3 == "import" and not after_dot3
            ):
                _add(specifiers, text1, start1, end1)
            kind3, text3, after_dot3 = kind2, text2, after_dot2
            kind2, text2, after_dot2 = kind1, text1, after_dot1
            kind1, text1, depth1, after_dot1, start1, end1 = kind, text, depth, after_dot, start, end
            if kind == PUNCT:
                regex_may_start = text != ")" and text != "]"
            elif kind == NAME:
                regex_may_start = text in _KEYWORDS_BEFORE_AN_EXPRESSION and not after_dot
            else:
                regex_may_start = kind == TEMPLATE and text.endswith("${")
            if self.detailed or (depth == 0 and kind == NAME and text == "export" and not after_dot):
                yield Token((kind, text, start, end, depth, after_dot))


def tokens(code):
    """The significant tokens of code, in order, in one linear pass."""
    return iter(_Lexer(code))


def _is_keyword(token, *words):
    return token is not None and token.kind == NAME and not token.after_dot and token.text in words


def string_value(token):
    """The text a plain string literal token stands for (escapes kept as written: module
    specifiers don't need them, and a specifier with an escape is left alone)."""
    return token.text[1:-1] if len(token.text) >= 2 and token.text[-1] == token.text[0] else None


# --- Imports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Specifier:
    """A module specifier in an import position, and where its literal sits in the code."""

    text: str
    start: int  # of the literal, quotes included
    end: int


def specifiers(code):
    """Every literal module specifier: `import ... from "x"`, `import "x"`, `export ...
    from "x"`, and `import("x")` with a plain string. A computed import isn't one."""
    return _analysis(code).specifiers


def with_specifiers_replaced(code, replace):
    """code with each specifier for which replace(text) returns a new text rewritten,
    in the quotes it had."""
    parts = []
    last = 0
    for specifier in specifiers(code):
        new = replace(specifier.text)
        if new is None or new == specifier.text:
            continue
        quote = code[specifier.start]
        parts.append(code[last : specifier.start])
        parts.append(f"{quote}{new}{quote}")
        last = specifier.end
    if not parts:
        return code
    parts.append(code[last:])
    return "".join(parts)


# --- Exports ------------------------------------------------------------------------


def export_names(code):
    """The names the module exports at run time, "default" included, type-only exports
    left out, in order; `export * from` is in star_exports."""
    return list(_analysis(code).exports)


def star_exports(code):
    """The specifiers of `export * from "x"`, whose names the module re-exports."""
    return list(_analysis(code).star_exports)


def has_default_export(code):
    return "default" in _analysis(code).exports


def default_export_is_a_function(code):
    """Whether the text's default export is written as a function (`export default
    function`, `async (...) =>`, `x => ...`): the val page offers arguments then. Whether
    a run calls it is asked of the loaded module, not of this."""
    return _analysis(code).default_is_a_function


def is_module(code):
    """Whether the code is an ES module (it imports or exports at its top level) rather
    than a bare expression."""
    return _analysis(code).is_module


# --- One pass, remembered -----------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    specifiers: tuple
    exports: tuple
    star_exports: tuple
    is_module: bool
    default_is_a_function: bool


# The most of each kind of fact (specifiers, export names, `export *` modules) one
# reading keeps: real modules have tens.
MAX_FACTS = 10_000

# The cache holds at most this many facts (specifiers and names) in all, so that a few
# vals of a hundred thousand imports each can't fill the memory.
_CACHE_WEIGHT = 200_000
_cache = OrderedDict()
_cached_weight = 0


def analyse(code):
    """Reads code once, so that the questions above are answered from memory."""
    _analysis(code)


# Reading a megabyte of source takes a good part of a second, so callers on an event
# loop read in these threads (read_off_the_loop). Two of them: a flood of large sources
# waits its turn here, instead of filling the loop's default pool, which other work uses.
_readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="source-reader")
# Below this, reading costs a few milliseconds at worst: done at once, so that a small
# val never waits behind someone's megabyte.
READ_AT_ONCE_BELOW = 4096


async def read_off_the_loop(function, code, *args):
    """function(code, *args) (analyse, or a reading of code), in a reader thread unless
    code is small or already read."""
    code = code or ""
    if len(code) < READ_AT_ONCE_BELOW or _digest(code) in _cache:
        return function(code, *args)
    return await asyncio.get_running_loop().run_in_executor(_readers, functools.partial(function, code, *args))


def _digest(code):
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).digest()


def _analysis(code):
    code = code or ""
    key = _digest(code)
    found = _cache.get(key)
    if found is not None:
        _cache.move_to_end(key)
        return found
    global _cached_weight
    found = _analyse(code)
    _cache[key] = found
    _cached_weight += _weight(found)
    while _cached_weight > _CACHE_WEIGHT and len(_cache) > 1:
        _, dropped = _cache.popitem(last=False)
        _cached_weight -= _weight(dropped)
    return found


def _weight(analysis):
    return 1 + len(analysis.specifiers) + len(analysis.exports) + len(analysis.star_exports)


class _Reader:
    """The tokens with one token of lookahead, taken only when asked for (so that the
    analysis can turn the lexer's detail on before the token after `export` is read)."""

    _NOTHING = object()

    def __init__(self, lexer):
        self._tokens = iter(lexer)
        self._next = self._NOTHING

    def peek(self):
        if self._next is self._NOTHING:
            self._next = next(self._tokens, None)
        return self._next

    def take(self):
        token = self.peek()
        self._next = self._NOTHING
        return token


def _add(specifiers, literal, start, end):
    text = literal[1:-1] if len(literal) >= 2 and literal[-1] == literal[0] else None
    if text is not None and len(specifiers) < MAX_FACTS:
        specifiers.append(Specifier(text, start, end))


def _analyse(code):
    lexer = _Lexer(code, detailed=False)
    reader = _Reader(lexer)
    # Ordered sets (dicts), as a module may export a few hundred thousand names, and the
    # analysis keeps MAX_FACTS of each kind at most (a stub of more names, or a module of
    # more imports, fails clearly rather than costing the host without bound).
    exports = {}
    stars = {}
    exports_something = False
    found = {"default_is_a_function": False}

    def export(name):
        if name and len(exports) < MAX_FACTS:
            exports.setdefault(name, None)

    while (token := reader.take()) is not None:
        if not (_is_keyword(token, "export") and token.depth == 0):
            continue
        lexer.detailed = True  # the statement's tokens, from the next one on
        following = reader.peek()
        if not (following is not None and following.kind == PUNCT and following.text in (":", "=", "(", ".")):
            # (else `export = x`, CommonJS in TypeScript, or a name used as a value)
            exports_something = True
            _read_export(reader, export, stars, found)
        lexer.detailed = False
    module = exports_something or lexer.imports_at_top_level
    return Analysis(tuple(lexer.specifiers), tuple(exports), tuple(stars), module, found["default_is_a_function"])


_DECLARATIONS = frozenset(["function", "class", "enum", "namespace", "module"])
_TYPE_ONLY = frozenset(["type", "interface", "declare"])


def _read_export(reader, export, stars, found):
    """Reads what follows `export` at the top level, adding the names it exports."""
    token = reader.take()
    if token is None:
        return
    if _is_keyword(token, "default"):
        export("default")
        following = reader.peek()
        if _is_keyword(following, "async"):
            reader.take()
            following = reader.peek()
        if _is_keyword(following, "function") or following is not None and following.text == "(" and following.kind == PUNCT:
            found["default_is_a_function"] = True
        elif following is not None and following.kind == NAME:
            reader.take()
            arrow = reader.peek()
            found["default_is_a_function"] = arrow is not None and arrow.kind == PUNCT and arrow.text == "=>"
    elif token.kind == PUNCT and token.text == "*":
        following = reader.take()
        if _is_keyword(following, "as"):
            export(_binding_name(reader.take()))
        elif _is_keyword(following, "from"):
            literal = reader.take()
            if literal is not None and literal.kind == STRING:
                text = string_value(literal)
                if text is not None and len(stars) < MAX_FACTS:
                    stars.setdefault(text, None)
    elif token.kind == PUNCT and token.text == "{":
        for name in _export_list(reader):
            export(name)
    elif _is_keyword(token, *_TYPE_ONLY):
        following = reader.peek()
        if token.text == "type" and following is not None and following.kind == PUNCT and following.text in ("{", "*"):
            reader.take()
            if following.text == "{":
                list(_export_list(reader))  # `export type { A }`: types only
    elif _is_keyword(token, "async"):
        if _is_keyword(reader.peek(), "function"):
            reader.take()
            export(_declared_name(reader))
    elif _is_keyword(token, "abstract"):
        if _is_keyword(reader.peek(), "class"):
            reader.take()
            export(_declared_name(reader))
    elif _is_keyword(token, *_DECLARATIONS):
        export(_declared_name(reader))
    elif _is_keyword(token, "import"):
        export(_binding_name(reader.take()))  # `export import A = B.C`
    elif _is_keyword(token, "const", "let", "var", "using"):
        if token.text == "const" and _is_keyword(reader.peek(), "enum"):
            reader.take()
            export(_declared_name(reader))
            return
        for name in _declared_variables(reader):
            export(name)


def _binding_name(token):
    if token is not None and token.kind == NAME:
        return token.text
    return None


def _declared_name(reader):
    """The name after `function` (or `function*`), `class` or `enum`."""
    token = reader.take()
    if token is not None and token.kind == PUNCT and token.text == "*":
        token = reader.take()
    return _binding_name(token)


def _export_list(reader):
    """The exported names of `{ a, b as c, type T, "x" as y }`, up to its "}"."""
    item = []
    while (token := reader.take()) is not None:
        if token.kind == PUNCT and token.text in (",", "}"):
            name = _exported_name(item)
            if name is not None:
                yield name
            item = []
            if token.text == "}":
                return
        else:
            item.append(token)


def _exported_name(item):
    if not item or _is_keyword(item[0], "type") and len(item) > 1:
        return None  # empty, or a type-only specifier
    last = item[-1]
    if last.kind == STRING:
        return string_value(last)
    return last.text if last.kind == NAME else None


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_STATEMENT_STARTS = frozenset(
    "export import const let var function class enum interface type namespace declare async abstract".split()
)


def _declared_variables(reader):
    """The names bound by `const a = 1, { b, c: d } = e, [f] = g`, up to the end of the
    statement. Initializers and type annotations are skipped by counting brackets."""
    while True:
        token = reader.take()
        if token is None:
            return
        if token.kind == NAME:
            yield token.text
        elif token.kind == PUNCT and token.text in ("{", "["):
            yield from _pattern_names(reader, token.text)
        else:
            return
        ended = _skip_to_next_declarator(reader)
        if ended:
            return


def _pattern_names(reader, opener):
    """The names a destructuring pattern binds, from just after its "{" or "[" to its
    close. Nested patterns are followed with an explicit stack, not recursion."""
    closers = [_OPENERS[opener]]
    in_object = [opener == "{"]
    expect_binding = True  # at the start of an element
    while closers and (token := reader.take()) is not None:
        if token.kind == PUNCT and token.text in _OPENERS:
            if expect_binding and token.text in ("{", "["):
                closers.append(_OPENERS[token.text])
                in_object.append(token.text == "{")
                continue
            _skip_balanced(reader, token.text)  # a default value's or a computed key's brackets
            continue
        if token.kind == PUNCT and token.text == closers[-1]:
            closers.pop()
            in_object.pop()
            expect_binding = False
            continue
        if token.kind == PUNCT and token.text == ",":
            expect_binding = True
            continue
        if token.kind == PUNCT and token.text == ":" and in_object[-1]:
            expect_binding = True  # `key: target`: the target is the binding
            continue
        if token.kind == PUNCT and token.text == "=":
            _skip_default(reader, closers[-1])
            expect_binding = False
            continue
        if token.kind == PUNCT and token.text == "...":
            continue
        if token.kind == NAME and expect_binding:
            following = reader.peek()
            if in_object[-1] and following is not None and following.kind == PUNCT and following.text == ":":
                continue  # a key; its target follows the colon
            yield token.text
            expect_binding = False


def _skip_balanced(reader, opener):
    """Skips to just after the bracket that closes `opener` (already taken)."""
    closers = [_OPENERS[opener]]
    while closers and (token := reader.take()) is not None:
        if token.kind == PUNCT:
            if token.text in _OPENERS:
                closers.append(_OPENERS[token.text])
            elif token.text == closers[-1]:
                closers.pop()


def _skip_default(reader, closer):
    """Skips a default value inside a pattern, up to (not past) its "," or closer."""
    while (token := reader.peek()) is not None:
        if token.kind == PUNCT and token.text in (",", closer):
            return
        reader.take()
        if token.kind == PUNCT and token.text in _OPENERS:
            _skip_balanced(reader, token.text)


def _skip_to_next_declarator(reader):
    """Skips a declarator's type annotation and initializer. Returns True when the
    statement ended (";", or a token that starts a new statement), False after a ","."""
    angle = 0  # in a type annotation, "<" and ">" are brackets
    in_type = False
    while (token := reader.peek()) is not None:
        if token.kind == PUNCT:
            if token.text == ";":
                reader.take()
                return True
            if token.text == "," and angle == 0:
                reader.take()
                return False
            if token.text == ":" and not in_type:
                in_type = True
            elif token.text == "=" and angle == 0:
                in_type = False
            elif in_type and token.text == "<":
                angle += 1
            elif in_type and token.text == ">" and angle > 0:
                angle -= 1
            reader.take()
            if token.text in _OPENERS:
                _skip_balanced(reader, token.text)
            continue
        if token.kind == NAME and not token.after_dot and token.text in _STATEMENT_STARTS and token.depth == 0:
            return True  # a new statement, after an automatic semicolon
        reader.take()
    return True
