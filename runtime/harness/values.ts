// Return values, made safe to send as JSON. undefined and Response values keep a
// marker so the UI can show them for what they are.

import type { WireValue } from "./messages.ts";

export async function toWireValue(value: unknown): Promise<WireValue> {
  if (value instanceof Response) return await responseToWire(value);
  if (value === undefined) return { kind: "undefined" };
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`the return value cannot be converted to JSON: ${(error as Error).message}`);
  }
  // Functions and symbols have no JSON form: treat them like undefined, as JSON does.
  if (json === undefined) return { kind: "undefined" };
  return { kind: "json", json: JSON.parse(json) };
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
