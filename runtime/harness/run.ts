// Loads the val and calls what the job names.

import type { Job, WireValue } from "./messages.ts";
import { setValUrl } from "./errors.ts";
import { reviveArguments, toWireValue } from "./values.ts";

function moduleUrl(job: Job): string {
  if (job.url !== null) return job.url;
  const bytes = new TextEncoder().encode(job.code ?? "");
  const url = "data:application/typescript;base64," + bytes.toBase64();
  setValUrl(url);
  return url;
}

async function loadVal(job: Job): Promise<Record<string, unknown>> {
  // The URL is a variable on purpose: Deno pre-authorises every file in the *static*
  // module graph, so a val must never be part of it, or its own literal imports of
  // file:// URLs would be allowed.
  const url = moduleUrl(job);
  return await import(url);
}

export async function runJob(job: Job): Promise<WireValue> {
  const module = await loadVal(job);
  if (job.mode === "script") return { kind: "undefined" };
  // "auto": a module with the export is called, one without is a script whose top level
  // was the whole run. Asked of the loaded module, not guessed from its text.
  if (job.mode === "auto" && !(job.export in module)) return { kind: "undefined" };
  if (!(job.export in module)) {
    throw new Error(`the val has no export named "${job.export}"`);
  }
  const exported = module[job.export];
  const args = job.args.map(reviveArguments);
  const value = typeof exported === "function" ? await exported(...args) : await exported;
  return await toWireValue(value);
}

export type Handler = (request: Request) => unknown;

/**
 * An HTTP val's handler: the named export as a function of a Request, or an object
 * with a `fetch` method (the shape `deno serve` takes).
 */
export async function loadHandler(job: Job): Promise<Handler> {
  const module = await loadVal(job);
  if (!(job.export in module)) {
    throw new Error(`the val has no export named "${job.export}"`);
  }
  const exported = module[job.export] as { fetch?: unknown } | null;
  if (typeof exported === "function") return exported as Handler;
  if (exported !== null && typeof exported === "object" && typeof exported.fetch === "function") {
    const fetchMethod = exported.fetch as Handler;
    return (request) => fetchMethod.call(exported, request);
  }
  throw new TypeError(`the val's "${job.export}" export must be a function that takes a Request`);
}

/**
 * Loads a tiny TypeScript module the way a val is loaded, while the process waits in
 * the pool, so the first real import finds the loader and transpiler warm.
 */
export async function warmUp(): Promise<void> {
  const source = "export default (n: number): number => n + 1;";
  const url = "data:application/typescript;base64," + new TextEncoder().encode(source).toBase64();
  const module = await import(url);
  module.default(1);
}
