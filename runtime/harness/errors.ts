// Errors as the val's author should see them: named after their own file, val.ts,
// without the harness's frames or the host's paths.

import type { ErrorInfo } from "./messages.ts";

/** The name inline code appears under in messages and stacks. */
export const VAL_FILE = "val.ts";

let valUrl: string | null = null;

/** Remembers the data: URL the val was loaded from, to rename it in stacks. */
export function setValUrl(url: string): void {
  valUrl = url;
}

const harnessDir = new URL(".", import.meta.url).href;
// Deno shortens long data: URLs in stacks to "start......end".
const dataUrlPattern = /data:application\/typescript;base64,[A-Za-z0-9+/=]*(?:\.\.\.\.\.\.[A-Za-z0-9+/=]*)?/g;

export function cleanText(text: string): string {
  if (valUrl === null) return text;
  return text.replaceAll(valUrl, VAL_FILE).replace(dataUrlPattern, VAL_FILE);
}

function cleanStack(stack: string): string {
  return cleanText(stack)
    .split("\n")
    .filter((line) => !line.includes(harnessDir))
    .join("\n");
}

export function describeError(thrown: unknown): ErrorInfo {
  if (thrown instanceof Error) {
    return {
      name: thrown.name,
      message: cleanText(thrown.message),
      stack: typeof thrown.stack === "string" ? cleanStack(thrown.stack) : null,
    };
  }
  // `throw "oops"` and friends: there is no stack to show.
  const message = typeof thrown === "string" ? thrown : Deno.inspect(thrown, { colors: false });
  return { name: "Error", message: cleanText(message), stack: null };
}
