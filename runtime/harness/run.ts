// Loads the val and calls what the job names.

import type { Job, WireValue } from "./messages.ts";
import { setValUrl } from "./errors.ts";
import { toWireValue } from "./values.ts";

function moduleUrl(job: Job): string {
  if (job.url !== null) return job.url;
  const bytes = new TextEncoder().encode(job.code ?? "");
  const url = "data:application/typescript;base64," + bytes.toBase64();
  setValUrl(url);
  return url;
}

export async function runJob(job: Job): Promise<WireValue> {
  // The URL is a variable on purpose: Deno pre-authorises every file in the *static*
  // module graph, so a val must never be part of it, or its own literal imports of
  // file:// URLs would be allowed.
  const url = moduleUrl(job);
  const module = await import(url);
  if (job.mode === "script") return { kind: "undefined" };
  if (!(job.export in module)) {
    throw new Error(`the val has no export named "${job.export}"`);
  }
  const exported = module[job.export];
  const value = typeof exported === "function" ? await exported(...job.args) : await exported;
  return await toWireValue(value);
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
