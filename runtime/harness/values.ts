// Return values, made safe to send as JSON. undefined and Response values keep a
// marker so the UI can show them for what they are.

import type { WireValue } from "./messages.ts";

// Taken at start-up, before a val could replace them to slip a value past the checks.
const stringify = JSON.stringify;
const parse = JSON.parse;

/**
 * How deeply JSON the host reads may nest arrays and objects. Python's parser gives up
 * near 1,000 levels, and the host walks what it reads; real data stays far below this.
 */
export const MAX_JSON_DEPTH = 256;

/** Whether JSON text nests arrays and objects more than MAX_JSON_DEPTH deep. */
export function nestsTooDeeply(json: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const code = json.charCodeAt(i);
    if (inString) {
      if (code === 0x5c) i++; // a backslash: the next character is escaped
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) {
      inString = true;
    } else if (code === 0x5b || code === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) return true;
    } else if (code === 0x5d || code === 0x7d) {
      depth--;
    }
  }
  return false;
}

export async function toWireValue(value: unknown): Promise<WireValue> {
  if (value instanceof Response) return await responseToWire(value);
  if (value === undefined) return { kind: "undefined" };
  let json: string | undefined;
  try {
    json = stringify(value);
  } catch (error) {
    throw new TypeError(`the return value cannot be converted to JSON: ${(error as Error).message}`);
  }
  // Functions and symbols have no JSON form: treat them like undefined, as JSON does.
  if (json === undefined) return { kind: "undefined" };
  if (nestsTooDeeply(json)) {
    throw new TypeError(
      `the return value is nested too deeply: more than ${MAX_JSON_DEPTH} levels of arrays and objects`,
    );
  }
  return { kind: "json", json: parse(json) };
}

async function responseToWire(response: Response): Promise<WireValue> {
  const bytes = new Uint8Array(await response.arrayBuffer());
  let body: string;
  let bodyEncoding: "text" | "base64";
  try {
    body = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    bodyEncoding = "text";
  } catch {
    body = bytes.toBase64();
    bodyEncoding = "base64";
  }
  return {
    kind: "response",
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
    body,
    bodyEncoding,
  };
}

/**
 * Arguments as the val receives them: JSON, except that an object of exactly the form
 * {"$file": {"name", "type", "base64"}} becomes a real File (an email's attachment).
 */
export function reviveArguments(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reviveArguments);
  if (value === null || typeof value !== "object") return value;
  const file = fileDescription(value as Record<string, unknown>);
  if (file !== null) {
    return new File([Uint8Array.fromBase64(file.base64)], file.name, { type: file.type });
  }
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, reviveArguments(item)]));
}

interface FileDescription {
  name: string;
  type: string;
  base64: string;
}

function fileDescription(value: Record<string, unknown>): FileDescription | null {
  const keys = Object.keys(value);
  if (keys.length !== 1 || keys[0] !== "$file") return null;
  const file = value.$file as Record<string, unknown>;
  if (file === null || typeof file !== "object" || Array.isArray(file)) return null;
  const fields = Object.keys(file).sort();
  if (fields.join(",") !== "base64,name,type") return null;
  if (typeof file.name !== "string" || typeof file.type !== "string" || typeof file.base64 !== "string") return null;
  return file as unknown as FileDescription;
}
