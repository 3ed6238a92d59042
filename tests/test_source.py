"""Reading a val's source on the host (vals/source.py): imports, exports, modules."""

import random

from vals import source

VAL = """\
// import "/v/nope/in_a_comment.ts"
/* export const hidden = 1 */
import { a } from "/v/bob/lib.ts";
import "https://esm.sh/x";
import * as ns from './local.ts'
const re = /from "not a specifier"/g, t = `export ${`nested ${"from"}`} const notAnExport`;
export const one = 1, two = { a: [1, 2] }, three: Map<string, number> = new Map();
export const { p, q: r, s = 3, ...rest } = obj, [u, [v]] = arr;
export async function f() { const lib = await import("/v/bob/dynamic.ts"); }
export function* gen() {}
export class K {}
export abstract class AK {}
export enum E { A }
export interface I {}
export type T = string;
export declare const ambient: number;
export type { TT } from "./types.ts";
export { g, h as hh, type Hidden } from "/v/carol/re.ts";
export * from "/v/dave/star.ts";
export * as nsx from "/v/erin/ns.ts";
export default function () {}
namespace N { export const inner = 1 }
x.export = 1;
"""


def test_it_finds_the_names_a_module_exports_at_run_time():
    assert source.export_names(VAL) == [
        "one", "two", "three", "p", "r", "s", "rest", "u", "v", "f", "gen", "K", "AK", "E", "g", "hh", "nsx", "default",
    ]
    assert source.star_exports(VAL) == ["/v/dave/star.ts"]
    assert source.has_default_export(VAL) and source.default_export_is_a_function(VAL)


def test_it_finds_specifiers_in_import_positions_only():
    assert [specifier.text for specifier in source.specifiers(VAL)] == [
        "/v/bob/lib.ts", "https://esm.sh/x", "./local.ts", "/v/bob/dynamic.ts", "./types.ts", "/v/carol/re.ts",
        "/v/dave/star.ts", "/v/erin/ns.ts",
    ]


def test_it_rewrites_specifiers_in_their_own_quotes_and_nothing_else():
    code = "import a from '/v/bob/a.ts'; const s = '/v/bob/a.ts'; import(\"/v/bob/b.ts\");"
    rewritten = source.with_specifiers_replaced(code, lambda text: "http://host" + text if text.startswith("/v/") else None)
    assert rewritten == "import a from 'http://host/v/bob/a.ts'; const s = '/v/bob/a.ts'; import(\"http://host/v/bob/b.ts\");"


def test_it_tells_a_module_from_an_expression():
    assert source.is_module("import x from 'y'; x")
    assert source.is_module("\n\n  export default 1")
    assert not source.is_module("1 + 2")
    assert not source.is_module("import('x')")
    assert not source.is_module("import.meta.url")
    assert not source.is_module("`export default ${1}`")


def test_any_soup_of_tokens_is_read_without_an_error():
    pieces = list("(){}[]<>/\\*`$'\"=;:,.?!+-\n abx0") + [
        "export ", "import ", "from ", "default ", "=>", "function ", "class ", "${", "const ", "as ", "type ",
        '"/v/a/b.ts"', "'x'", "async ", "/*", "*/", "//", "import(", "export {", "export *", "export const {", "...",
    ]
    pick = random.Random(1)
    for _ in range(5000):
        code = "".join(pick.choice(pieces) for _ in range(pick.randrange(40)))
        source.export_names(code)
        source.is_module(code)
        assert source.with_specifiers_replaced(code, lambda text: text) == code
